"""Guardrails: detect and redact payment cards, personal data and secrets, and
score prompt-injection attempts, in the text of a request.

The public API is :func:`scan` (and :class:`ScanPlan`, the same for one
detector set scanned many times), :func:`redact`, :func:`mask_card` and
:func:`injection_score`; see :mod:`extproc.guardrails.detectors` for what each
detector accepts and how well it does on the labelled corpus.
"""

from .detectors import (
    DETECTORS,
    PLACEHOLDERS,
    Finding,
    ScanPlan,
    iban_valid,
    luhn_valid,
    mask_card,
    redact,
    scan,
    ssn_valid,
)
from .injection import DEFAULT_THRESHOLD as DEFAULT_INJECTION_THRESHOLD
from .injection import injection_score

__all__ = [
    "DEFAULT_INJECTION_THRESHOLD",
    "DETECTORS",
    "PLACEHOLDERS",
    "Finding",
    "ScanPlan",
    "iban_valid",
    "injection_score",
    "luhn_valid",
    "mask_card",
    "redact",
    "scan",
    "ssn_valid",
]

"""Command line: ``python -m bedrock_emulator --host 127.0.0.1 --port 8090``.

Flags: ``--host``, ``--port``, ``--region`` (the SigV4 region requests must
be signed for) and ``--credentials FILE``; the ``BEDROCK_EMULATOR_CREDENTIALS``
environment variable adds credentials inline (see :mod:`.credentials`).
Logs go to stderr, one line per request, never a secret.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from . import credentials
from .app import create_app
from .sigv4_verify import Verifier


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bedrock-emulator",
        description="A local Amazon Bedrock Runtime: InvokeModel, Converse, their streams and CountTokens, "
        "with SigV4 checked.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    parser.add_argument("--region", default="us-east-1", help="region requests must be signed for (default us-east-1)")
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help='JSON list of {"access_key_id", "secret_access_key", "session_token"?} to accept '
        f"(also ${credentials.ENV_VAR}; default: the public development pair {credentials.DEV_ACCESS_KEY_ID})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("bedrock_emulator")
    try:
        accepted = credentials.load(args.credentials, os.environ)
    except (OSError, ValueError) as exc:
        sys.exit(f"bedrock-emulator: cannot load credentials: {exc}")
    log.info(
        "listening on http://%s:%d region=%s accepting access keys %s",
        args.host,
        args.port,
        args.region,
        ", ".join(c.access_key_id for c in accepted),
    )
    app = create_app(Verifier(accepted, args.region))
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, shutdown_timeout=2.0)


if __name__ == "__main__":
    main()

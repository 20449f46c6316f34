"""The AWS credentials the emulator accepts.

Sources, merged: ``--credentials FILE`` and the ``BEDROCK_EMULATOR_CREDENTIALS``
environment variable, each a JSON list of
``{"access_key_id", "secret_access_key", "session_token"?}``. A key listed
with a session token only works together with that token, as temporary STS
credentials do.

With neither source, one fixed development pair is accepted. It is **not a
secret**: it is published here so that a local stack works out of the box, and
it means nothing to AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "BEDROCK_EMULATOR_CREDENTIALS"
DEV_ACCESS_KEY_ID = "AKIDEMULATOR00000000"
DEV_SECRET_ACCESS_KEY = "emulator/local/development/secret/key/00"  # public, see the module docstring


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return (
            f"Credential(access_key_id={self.access_key_id!r}, session_token={'set' if self.session_token else 'none'})"
        )


DEV_CREDENTIAL = Credential(DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY)


def parse(text: str, source: str) -> list[Credential]:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(entries, list):
        raise ValueError(f"{source}: expected a JSON list of credentials")
    found = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: entry {i} is not an object")
        key_id, secret, token = entry.get("access_key_id"), entry.get("secret_access_key"), entry.get("session_token")
        if not isinstance(key_id, str) or not key_id or not isinstance(secret, str) or not secret:
            raise ValueError(f"{source}: entry {i} needs non-empty access_key_id and secret_access_key strings")
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError(f"{source}: entry {i} has a session_token that is not a non-empty string")
        unknown = set(entry) - {"access_key_id", "secret_access_key", "session_token"}
        if unknown:
            raise ValueError(f"{source}: entry {i} has unknown fields {sorted(unknown)}")
        found.append(Credential(key_id, secret, token))
    return found


def load(file: Path | None, environ: Mapping[str, str]) -> list[Credential]:
    """Every accepted credential; the development pair when nothing is configured."""
    found: list[Credential] = []
    if file is not None:
        found += parse(file.read_text(encoding="utf-8"), str(file))
    if environ.get(ENV_VAR):
        found += parse(environ[ENV_VAR], ENV_VAR)
    if file is None and not environ.get(ENV_VAR):
        return [DEV_CREDENTIAL]
    by_key: dict[str, Credential] = {}
    for credential in found:
        if by_key.get(credential.access_key_id, credential) != credential:
            raise ValueError(f"access key {credential.access_key_id} is configured twice with different values")
        by_key[credential.access_key_id] = credential
    if not by_key:
        raise ValueError("the credentials given are an empty list: no request could ever be accepted")
    return list(by_key.values())

"""API keys: minting, hashing, loading, and looking a presented key up.

Keys are 256-bit random tokens, so a single SHA-256 is the right hash: a slow
password KDF buys nothing against brute force of a 2^256 space and would cost
milliseconds on every request. Only digests are kept in memory; the plaintext
keys file is read once and dropped.

Lookup hashes the presented key and finds that digest in a dict. What a
timing attack needs is a comparison whose duration depends on how much of a
*stored secret* the input matches; here the only comparisons are between the
presented key's SHA-256 and stored digests, and a client cannot steer its
digest towards a stored one (that would take a SHA-256 preimage), so how long
a lookup takes teaches nothing about any stored key, exactly as with comparing
digests in constant time. The dict keeps the cost flat however many keys are
configured; comparing with every digest in turn (``hmac.compare_digest``, the
first version) cost about half a microsecond per configured key on every
request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import ConfigError, GatewayConfig, Settings, load_settings

KEY_PREFIX = "gwk_"


def hash_key(key: str) -> str:
    """Hex SHA-256 of a key, the only form in which keys are stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def mint_key() -> str:
    """A new key: a recognisable prefix plus 256 bits from the OS CSPRNG."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_keys_file(path: Path) -> dict[str, str]:
    """Parse a keys file (``consumer: key`` YAML) into consumer → digest."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"GATEWAY_KEYS_FILE={path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        # The YAML error would quote the offending line, which may hold a key.
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" near line {line + 1}" if line is not None else ""
        raise ConfigError(f"GATEWAY_KEYS_FILE={path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"GATEWAY_KEYS_FILE={path}: must be a mapping of consumer: key")
    digests = {}
    for consumer, key in data.items():
        if not isinstance(consumer, str) or not isinstance(key, str) or len(key) < 16:
            raise ConfigError(
                f"GATEWAY_KEYS_FILE={path}: entry for {consumer!r} must map a consumer name to a key of 16+ characters"
            )
        digests[consumer] = hash_key(key)
    return digests


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Every accepted key digest with the consumer it belongs to."""

    entries: tuple[tuple[bytes, str], ...]
    _index: dict[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", dict(self.entries))

    @classmethod
    def build(cls, config: GatewayConfig, keys_file: Path | None) -> KeyRing:
        entries: list[tuple[bytes, str]] = []
        for name, consumer in config.consumers.items():
            entries.extend((bytes.fromhex(d), name) for d in consumer.key_sha256)
        if keys_file is not None:
            entries.extend((bytes.fromhex(d), name) for name, d in read_keys_file(keys_file).items())
        seen: dict[bytes, str] = {}
        for digest, name in entries:
            if seen.setdefault(digest, name) != name:
                raise ConfigError(f"the same key is configured for consumers {seen[digest]!r} and {name!r}")
        return cls(tuple(entries))

    def consumer_for(self, key: str) -> str | None:
        """The consumer owning ``key``, or None (see the module docstring on timing)."""
        return self._index.get(hashlib.sha256(key.encode("utf-8")).digest())

    def __len__(self) -> int:
        return len(self.entries)


def load_settings_and_keys() -> tuple[Settings, KeyRing]:
    """The configuration and key ring the environment names (start-up, reload, ``config check``)."""
    settings = load_settings()
    return settings, KeyRing.build(settings.config, settings.keys_file)

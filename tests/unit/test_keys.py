"""Keys: minted strong, stored hashed, looked up by digest, never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc.cli import main
from extproc.config import ConfigError, parse_config
from extproc.keys import KeyRing, hash_key, mint_key


def test_minted_keys_are_long_random_and_distinct() -> None:
    keys = {mint_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("gwk_") and len(k) >= 40 for k in keys)


def test_key_ring_from_config_hashes_and_keys_file(tmp_path: Path) -> None:
    config_key, file_key = mint_key(), mint_key()
    config = parse_config(f"consumers:\n  billing:\n    key_sha256: {hash_key(config_key)}\n")
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(f"search: {file_key}\n")
    ring = KeyRing.build(config, keys_file)
    assert ring.consumer_for(config_key) == "billing"
    assert ring.consumer_for(file_key) == "search"
    assert ring.consumer_for(file_key + "x") is None
    assert ring.consumer_for("") is None
    assert file_key not in repr(ring), "only digests are kept"


def test_lookup_among_many_keys() -> None:
    keys = {f"team-{i}": mint_key() for i in range(2000)}
    config = parse_config("consumers:\n" + "".join(f"  {name}:\n    key_sha256: {hash_key(key)}\n"
                                                    for name, key in keys.items()))
    ring = KeyRing.build(config, None)
    assert len(ring) == 2000
    assert all(ring.consumer_for(key) == name for name, key in keys.items())
    assert ring.consumer_for(mint_key()) is None


def test_same_key_for_two_consumers_is_refused(tmp_path: Path) -> None:
    key = mint_key()
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(f"a: {key}\n")
    config = parse_config(f"consumers:\n  b:\n    key_sha256: {hash_key(key)}\n")
    with pytest.raises(ConfigError, match="same key"):
        KeyRing.build(config, keys_file)


def test_bad_keys_file_errors_do_not_echo_keys(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("team: short\n")
    with pytest.raises(ConfigError) as info:
        KeyRing.build(parse_config(""), keys_file)
    assert "short" not in str(info.value)
    keys_file.write_text("team: gwk_secretsecretsecret: [\n")
    with pytest.raises(ConfigError) as info:
        KeyRing.build(parse_config(""), keys_file)
    assert "gwk_secret" not in str(info.value)


def test_keys_new_prints_key_once_with_both_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "checkout"]) == 0
    out = capsys.readouterr().out
    key = next(word for word in out.split() if word.startswith("gwk_"))
    assert f"checkout: {key}" in out
    assert f"key_sha256: {hash_key(key)}" in out
    assert out.count(key) == 2  # the key itself, and the keys-file line to paste

"""Configuration: defaults, the environment contract, and errors that name field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc.config import ConfigError, load_settings, parse_config
from tests.paths import ROOT


def test_example_config_is_valid() -> None:
    settings = load_settings({"GATEWAY_CONFIG": str(ROOT / "config" / "gateway.yaml")})
    assert settings.config.models.default == "haiku"
    assert settings.endpoint_url == "https://bedrock-runtime.us-east-1.amazonaws.com"


def test_defaults_without_a_file() -> None:
    settings = load_settings({})
    catalogue = settings.config.models.catalogue
    assert catalogue["haiku"].bedrock_id == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert catalogue["sonnet"].bedrock_id == "us.anthropic.claude-sonnet-4-20250514-v1:0"
    assert catalogue["opus"].bedrock_id == "us.anthropic.claude-opus-4-5-20251101-v1:0"
    assert settings.config.policies["default"].models == ("*",)
    assert settings.keys_file is None


def test_environment_contract() -> None:
    settings = load_settings({
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:8090/",
        "GATEWAY_KEYS_FILE": "/run/secrets/keys.yaml",
    })
    assert settings.region == "eu-west-1"
    assert settings.endpoint_url == "http://127.0.0.1:8090"
    assert settings.keys_file == Path("/run/secrets/keys.yaml")
    assert load_settings({"AWS_DEFAULT_REGION": "ap-northeast-1"}).endpoint_url == (
        "https://bedrock-runtime.ap-northeast-1.amazonaws.com"
    )


def test_service_specific_endpoint_wins_over_global(tmp_path: Path) -> None:
    settings = load_settings({"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://b:2"})
    assert settings.endpoint_url == "http://b:2"


def test_endpoint_with_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="no path"):
        load_settings({"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://host:1/prefix"})


def test_error_names_field_and_line() -> None:
    text = "models:\n  default: haiku\n  catalogue:\n    haiku:\n      bedrock_id: x\n      prices:\n        input: -1\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="gw.yaml")
    assert "gw.yaml:7: models.catalogue.haiku.prices.input" in str(info.value)


def test_unknown_field_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("upstream:\n  region: us-east-1\n  endpont: http://x\n", source="gw.yaml")
    assert "gw.yaml:3: upstream.endpont" in str(info.value)
    assert "Extra inputs are not permitted" in str(info.value)


def test_references_must_resolve() -> None:
    with pytest.raises(ConfigError, match="unknown policy 'gold'"):
        parse_config("consumers:\n  team:\n    policy: gold\n")
    with pytest.raises(ConfigError, match="'llama' is not a catalogue alias"):
        parse_config("policies:\n  default:\n    models: [llama]\n")
    with pytest.raises(ConfigError, match="default model 'gpt' is not in the catalogue"):
        parse_config("models:\n  default: gpt\n")


def test_key_hash_must_be_a_digest() -> None:
    with pytest.raises(ConfigError, match="consumers.team.key_sha256"):
        parse_config("consumers:\n  team:\n    key_sha256: gwk_plaintext_key\n")


def test_bad_yaml_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("models: [\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"GATEWAY_CONFIG": "/nonexistent/gateway.yaml"})


def test_serve_refuses_a_records_file_it_cannot_append_to(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused once, clearly, at start, instead of a traceback in every worker restarted forever."""
    from extproc.cli import main

    config = tmp_path / "gateway.yaml"
    config.write_text(f"usage_records: {{file: {tmp_path}/missing-dir/usage.jsonl}}\n")
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    assert main(["serve", "--workers", "1"]) == 2
    error = capsys.readouterr().err
    assert "usage_records.file: cannot append to" in error and "missing-dir" in error

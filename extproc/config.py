"""Gateway configuration: a YAML file validated by pydantic.

Errors name the bad field *and* the line it is on, because the people who edit
this file are platform engineers reading a deploy log, not Python tracebacks.
The environment contract of DESIGN.md (``GATEWAY_CONFIG``,
``GATEWAY_KEYS_FILE``, ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, ``AWS_REGION``)
is applied here, in one place, so the rest of the code reads resolved values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_REGION = "us-east-1"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Strict(BaseModel):
    """Unknown fields are errors: a typo must not silently disable a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Strict):
    """USD per million tokens of each type (used for cost metering)."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cache_read: float = Field(0.0, ge=0)
    cache_write: float = Field(0.0, ge=0)


class ModelEntry(_Strict):
    """One catalogue model: what clients may call it and where it goes on Bedrock."""

    bedrock_id: str = Field(min_length=1, description="model or inference profile ID sent to Bedrock")
    base_id: str | None = Field(None, description="base model ID (count-tokens needs it)")
    names: tuple[str, ...] = Field((), description="Anthropic/OpenAI-style names clients send")
    prices: Prices = Prices()
    max_temperature: float = Field(1.0, gt=0, description="upper bound of the model's temperature range")


class Budget(_Strict):
    """Spend caps per calendar UTC day and month, in USD (catalogue prices) and/or tokens (all types)."""

    usd_per_day: float | None = Field(None, gt=0)
    usd_per_month: float | None = Field(None, gt=0)
    tokens_per_day: int | None = Field(None, ge=1)
    tokens_per_month: int | None = Field(None, ge=1)


class Limits(_Strict):
    """Per-consumer limits; each is off when unset.

    Requests and tokens per minute are sliding 60-second windows (exact, no
    burst at a minute boundary); tokens count every type Bedrock reports.
    """

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    concurrent_requests: int | None = Field(None, ge=1)
    budget: Budget = Budget()

    @property
    def active(self) -> bool:
        budget = self.budget  # read on every request: no model_dump() here
        return any(v is not None for v in (self.requests_per_minute, self.tokens_per_minute, self.concurrent_requests,
                                           budget.usd_per_day, budget.usd_per_month, budget.tokens_per_day,
                                           budget.tokens_per_month))


class Policy(_Strict):
    """What a consumer may do. ``models: ["*"]`` means every catalogue model."""

    models: tuple[str, ...] = ("*",)
    guardrails: str = "default"
    """The guardrail policy (``guardrail_policies``) applied to this consumer's requests and answers."""
    limits: Limits = Limits()
    audit: bool = False
    """Write this consumer's prompts and answers (redacted by its guardrail policy) to the audit log."""


class LimitsBackend(_Strict):
    """Where limit counters and usage totals live (shared state)."""

    backend: Literal["memory", "redis"] = "memory"
    """``memory``: one process. ``redis``: several processes and replicas share exact counters."""
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="overridden by GATEWAY_REDIS_URL")
    key_prefix: str = "gw:"
    on_error: Literal["open", "closed"] = "open"
    """Redis unreachable: ``open`` lets requests through unlimited, ``closed`` answers 503."""
    timeout_seconds: float = Field(0.25, gt=0, le=10)
    """Per Redis call; a slow Redis must not hold requests for long."""
    usage_retention_days: int = Field(35, ge=1, le=400)
    """How long usage totals (admin API ``usage``) are kept: per minute for the last day, per hour before."""


class UsageRecords(_Strict):
    """The per-request usage record: one JSON line when a request ends."""

    stdout: bool = True
    file: str | None = Field(None, description="append records to this file too (JSON lines)")


class Audit(_Strict):
    """Prompts and answers of consumers whose policy has ``audit: true``; off unless a file is given."""

    file: str | None = None
    max_chars: int = Field(16_384, ge=256)
    """Prompt and answer are each cut to this many characters."""


class Admin(_Strict):
    """The admin gRPC API (usage totals, reload); its token comes from GATEWAY_ADMIN_TOKEN."""

    listen: str = "127.0.0.1:9465"


GuardrailAction = Literal["block", "redact", "monitor"]


class BedrockGuardrail(_Strict):
    """A Bedrock Guardrail attached to every upstream call of a policy."""

    identifier: str = Field(min_length=1)
    version: str = Field(min_length=1)


class GuardrailPolicy(_Strict):
    """Detector → action, plus limits. Detectors not listed are off."""

    detectors: dict[str, GuardrailAction] = Field(default_factory=dict)
    deny_keywords: tuple[str, ...] = ()
    deny_patterns: tuple[str, ...] = ()
    injection_threshold: float = Field(0.5, gt=0, le=1)
    card_style: Literal["placeholder", "last4"] = "placeholder"
    max_prompt_chars: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    bedrock_guardrail: BedrockGuardrail | None = None

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: dict[str, str]) -> dict[str, str]:
        from .guardrails.detectors import DETECTORS

        unknown = sorted(set(value) - set(DETECTORS))
        if unknown:
            raise ValueError(f"unknown detectors {unknown}; known: {', '.join(DETECTORS)}")
        return value

    @field_validator("deny_patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"deny pattern {pattern!r} is not a valid regular expression: {exc}") from None
        return value


def _default_guardrail_policies() -> dict[str, GuardrailPolicy]:
    """Out of the box: card data and secrets never leave, bank and social security numbers are redacted.

    Email, phone and prompt-injection detection are opt-in per policy: support
    conversations legitimately carry contact details, and the injection
    heuristic costs the most per KB (README "Guardrails" has the numbers).
    """
    return {
        "default": GuardrailPolicy(detectors={
            "card": "block", "card_security": "block",
            "private_key": "block", "aws_secret_key": "block", "aws_access_key": "block", "api_token": "block",
            "iban": "redact", "ssn": "redact",
        }),
    }


class Consumer(_Strict):
    policy: str = "default"
    key_sha256: tuple[str, ...] = Field((), description="SHA-256 hex digests of this consumer's keys")

    @field_validator("key_sha256", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("key_sha256")
    @classmethod
    def _hex_digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for digest in value:
            if not _SHA256_HEX.match(digest):
                raise ValueError("must be a lowercase SHA-256 hex digest (see `extproc keys new`)")
        return value


class Upstream(_Strict):
    region: str | None = None
    endpoint: str | None = Field(None, description="overridden by AWS_ENDPOINT_URL_BEDROCK_RUNTIME")


def _default_catalogue() -> dict[str, ModelEntry]:
    return {
        "haiku": ModelEntry(
            bedrock_id="us.anthropic.claude-haiku-4-5-20251001-v1:0",
            base_id="anthropic.claude-haiku-4-5-20251001-v1:0",
            names=("claude-haiku-4-5", "claude-haiku-4-5-20251001"),
            prices=Prices(input=1.0, output=5.0, cache_read=0.1, cache_write=1.25),
        ),
        "sonnet": ModelEntry(
            bedrock_id="us.anthropic.claude-sonnet-4-20250514-v1:0",
            base_id="anthropic.claude-sonnet-4-20250514-v1:0",
            names=("claude-sonnet-4-0", "claude-sonnet-4-20250514"),
            prices=Prices(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
        ),
        "opus": ModelEntry(
            bedrock_id="us.anthropic.claude-opus-4-5-20251101-v1:0",
            base_id="anthropic.claude-opus-4-5-20251101-v1:0",
            names=("claude-opus-4-5", "claude-opus-4-5-20251101"),
            prices=Prices(input=5.0, output=25.0, cache_read=0.5, cache_write=6.25),
        ),
    }


class Models(_Strict):
    default: str = "haiku"
    catalogue: dict[str, ModelEntry] = Field(default_factory=_default_catalogue)

    @model_validator(mode="after")
    def _default_is_listed(self) -> Models:
        if self.default not in self.catalogue:
            raise ValueError(f"default model {self.default!r} is not in the catalogue")
        return self


# anthropic_beta flags Bedrock's Claude models accept; anything else makes
# Bedrock answer "400 invalid beta flag" (Claude Code sends several).
DEFAULT_BETA_ALLOWLIST = (
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "tool-search-tool-2025-10-19",
)


class Anthropic(_Strict):
    """What the gateway changes in Anthropic bodies so that Bedrock accepts them."""

    beta_allowlist: tuple[str, ...] | None = Field(
        DEFAULT_BETA_ALLOWLIST, description="beta flags passed to Bedrock; null passes every flag through"
    )
    drop_fields: tuple[str, ...] = Field(
        ("context_management", "output_config"),
        description="top-level body fields removed before Bedrock ('Extra inputs are not permitted')",
    )


class GatewayConfig(_Strict):
    """The whole file. Every section is optional; the defaults make a working gateway."""

    upstream: Upstream = Upstream()
    models: Models = Models()
    anthropic: Anthropic = Anthropic()
    policies: dict[str, Policy] = Field(default_factory=lambda: {"default": Policy()})
    guardrail_policies: dict[str, GuardrailPolicy] = Field(default_factory=_default_guardrail_policies)
    consumers: dict[str, Consumer] = Field(default_factory=dict)
    keys_file: str | None = Field(None, description="overridden by GATEWAY_KEYS_FILE")
    limits: LimitsBackend = LimitsBackend()
    usage_records: UsageRecords = UsageRecords()
    audit: Audit = Audit()
    admin: Admin = Admin()

    @model_validator(mode="after")
    def _references_resolve(self) -> GatewayConfig:
        if "default" not in self.policies:
            raise ValueError("policies: a policy named 'default' is required (consumers without their own get it)")
        for name, consumer in self.consumers.items():
            if consumer.policy not in self.policies:
                raise ValueError(f"consumers.{name}.policy: unknown policy {consumer.policy!r}")
        for name, policy in self.policies.items():
            if policy.guardrails not in self.guardrail_policies:
                raise ValueError(f"policies.{name}.guardrails: unknown guardrail policy {policy.guardrails!r}")
            for model in policy.models:
                if model != "*" and model not in self.models.catalogue:
                    raise ValueError(f"policies.{name}.models: {model!r} is not a catalogue alias")
        return self


class Settings(BaseModel):
    """The configuration with the environment applied: what the server runs on."""

    model_config = ConfigDict(frozen=True)

    config: GatewayConfig
    region: str
    endpoint_url: str
    keys_file: Path | None
    redis_url: str = ""
    """``limits.redis_url``, or ``GATEWAY_REDIS_URL`` when set (it may carry a password: never logged)."""
    admin_token: str | None = None
    """``GATEWAY_ADMIN_TOKEN`` (or the file named by ``GATEWAY_ADMIN_TOKEN_FILE``); no token, no admin API."""


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Walk a composed YAML node tree along a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            key = next((k for k, _ in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = (key.start_mark.line + 1 if key is not None else line), match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Parse and validate configuration text; raise ConfigError naming field and line."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text) if root is not None else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if p not in ("function-after",))
            field = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {field}: {error['msg']}")
        raise ConfigError("invalid gateway configuration:\n  " + "\n  ".join(problems)) from None


def load_settings(env: os._Environ[str] | dict[str, str] | None = None) -> Settings:
    """Read ``GATEWAY_CONFIG`` (optional) and apply the environment contract."""
    env = os.environ if env is None else env
    path = env.get("GATEWAY_CONFIG")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"GATEWAY_CONFIG={path}: cannot read: {exc.strerror}") from None
        config = parse_config(text, source=path)
    else:
        config = GatewayConfig()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or config.upstream.region or DEFAULT_REGION
    endpoint = (
        env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
        or env.get("AWS_ENDPOINT_URL")
        or config.upstream.endpoint
        or f"https://bedrock-runtime.{region}.amazonaws.com"
    )
    if not re.match(r"^https?://[^/\s]+/?$", endpoint):
        raise ConfigError(f"Bedrock endpoint {endpoint!r} must be http(s)://host[:port] with no path")
    keys_file = env.get("GATEWAY_KEYS_FILE") or config.keys_file
    return Settings(
        config=config, region=region, endpoint_url=endpoint.rstrip("/"), keys_file=Path(keys_file) if keys_file else None,
        redis_url=env.get("GATEWAY_REDIS_URL") or config.limits.redis_url, admin_token=admin_token(env),
    )


def config_source(env: os._Environ[str] | dict[str, str] | None = None) -> str:
    """Where the configuration comes from, for messages: the ``GATEWAY_CONFIG`` path or the defaults."""
    return (os.environ if env is None else env).get("GATEWAY_CONFIG") or "built-in defaults"


def admin_token(env: os._Environ[str] | dict[str, str]) -> str | None:
    """The admin API token from ``env``; also what ``extproc usage`` and ``extproc reload`` authenticate with."""
    token = env.get("GATEWAY_ADMIN_TOKEN")
    path = env.get("GATEWAY_ADMIN_TOKEN_FILE")
    if not token and path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"GATEWAY_ADMIN_TOKEN_FILE={path}: cannot read: {exc.strerror}") from None
    if token and len(token) < 16:
        raise ConfigError("the admin token (GATEWAY_ADMIN_TOKEN) must be at least 16 characters")
    return token or None

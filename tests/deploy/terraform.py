"""Read deploy/ecs without Terraform: HCL parsing (python-hcl2), the module's
templates rendered as Terraform's templatefile() renders them, and the
module's locals that feed them, mirrored here.

The templates keep to a subset whose rendering is unambiguous:
``${jsonencode(NAME)}`` (a JSON value) and ``${NAME}`` inside a JSON or YAML
string (a number or a plain word); anything else is an error here, so a
template cannot grow a construct this renderer would get wrong.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
ECS = ROOT / "deploy" / "ecs"
MODULE = ECS / "modules" / "gateway"
EXAMPLE = ECS / "examples" / "complete"

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string quotes; remove them everywhere."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(path: Path) -> dict[str, Any]:
    """A parsed .tf or .tfvars file (parsed once per test run: python-hcl2 is slow); do not modify it."""
    return _load(path.resolve(), path.stat().st_mtime_ns)


@functools.cache
def _load(path: Path, _mtime: int) -> dict[str, Any]:
    with path.open() as handle:
        return unquote(hcl2.load(handle))


def blocks(directory: Path, kind: str) -> dict[str, Any]:
    """Every block of one kind across a module: resource/data → {type: {name: body}}, variable → {name: body}."""
    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in load(path).get(kind, []):
            for key, body in block.items():
                if kind in ("resource", "data"):
                    for name, inner in body.items():
                        found.setdefault(key, {})[name] = inner
                else:
                    found[key] = body
    return found


def locals_(directory: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in load(path).get("locals", []):
            found.update(block)
    return found


def source(directory: Path) -> str:
    """All .tf text of a directory without comments (for reference checks)."""
    text = "\n".join(p.read_text() for p in sorted(directory.glob("*.tf")))
    return re.sub(r"(?m)^\s*#.*$|\s#[^\"\n]*$", "", text)


def placeholders(template: Path) -> set[str]:
    names = set()
    for expression in _INTERPOLATION.findall(template.read_text()):
        match = re.fullmatch(r"jsonencode\((\w+)\)", expression) or re.fullmatch(r"(\w+)", expression)
        if not match:
            raise AssertionError(f"{template.name}: unsupported interpolation ${{{expression}}}")
        names.add(match.group(1))
    return names


def render(template: Path, variables: dict[str, Any]) -> str:
    """Terraform's templatefile() for the supported subset."""
    text = template.read_text()
    assert "%{" not in text and "$${" not in text, f"{template.name}: template directives are not supported here"
    missing = placeholders(template) - set(variables)
    extra = set(variables) - placeholders(template)
    assert not missing and not extra, f"{template.name}: missing {missing}, unused {extra}"

    def substitute(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("jsonencode("):
            return json.dumps(variables[expression[len("jsonencode("):-1]])
        value = variables[expression]
        assert isinstance(value, int | str) and not isinstance(value, bool), (expression, value)
        text = str(value)
        assert re.fullmatch(r"[\w.:/-]*", text), f"${{{expression}}} needs jsonencode() for {text!r}"
        return text

    return _INTERPOLATION.sub(substitute, text)


def templatefile_arguments(directory: Path, template_name: str) -> set[str]:
    """The keys of the variables map that the module passes to templatefile() for one template."""
    text = "\n".join(p.read_text() for p in sorted(directory.glob("*.tf")))
    calls = [m.end() for m in re.finditer(r'templatefile\("\$\{path\.module\}/' + re.escape(template_name)
                                         + r'",\s*\{', text)]
    assert len(calls) == 1, f"expected one templatefile() call for {template_name}, found {len(calls)}"
    depth, position, keys = 1, calls[0], set()
    line_start = position
    while depth:
        char = text[position]
        if char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == "\n":
            line_start = position + 1
        if depth == 1 and char == "=" and text[position + 1] != "=" and text[position - 1] not in "=!<>":
            key = text[line_start:position].strip()
            if re.fullmatch(r"\w+", key):
                keys.add(key)
        position += 1
    return keys


def variable_defaults(directory: Path = MODULE) -> dict[str, Any]:
    return {name: body.get("default") for name, body in blocks(directory, "variable").items()}


def tfvars(path: Path) -> dict[str, Any]:
    return {k: v for k, v in load(path).items() if k != "__comments__"}


def evaluate_local(name: str, values: dict[str, int]) -> int:
    """A module local that is plain arithmetic (``var.stop_timeout - 10``), evaluated with ``values``."""
    expression = locals_(MODULE)[name]
    if isinstance(expression, int):
        return expression
    expression = expression.removeprefix("${").removesuffix("}")
    for reference, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expression = expression.replace(reference, str(value))
    assert re.fullmatch(r"[\d\s+-]+", expression), f"local {name} is not plain arithmetic: {expression}"
    return int(eval(expression))  # noqa: S307 - digits, spaces, + and - only (checked above)


# --- The module's locals, mirrored (tests check these against the HCL text) ----

ACCOUNT = "123456789012"


def bedrock_arns(region: str, inference_profile_ids: list[str], foundation_model_ids: list[str],
                 model_regions: list[str], partition: str = "aws") -> dict[str, list[str]]:
    regions = model_regions or [region]
    foundation = []
    for model_region in regions:
        for model in foundation_model_ids:
            arn = f"arn:{partition}:bedrock:{model_region}::foundation-model/{model}"
            if arn not in foundation:
                foundation.append(arn)
    return {
        "inference_profile_arns": [f"arn:{partition}:bedrock:{region}:{ACCOUNT}:inference-profile/{profile}"
                                   for profile in inference_profile_ids],
        "foundation_model_arns": foundation,
        "count_tokens_arns": [f"arn:{partition}:bedrock:{region}::foundation-model/{model}"
                              for model in foundation_model_ids],
    }


def bedrock_policy(arns: dict[str, list[str]], guardrail_arns: list[str]) -> dict[str, Any]:
    """iam.tf: the template rendered, statements without resources dropped."""
    policy = json.loads(render(MODULE / "bedrock_policy.json.tftpl", {**arns, "guardrail_arns": guardrail_arns}))
    return {"Version": policy["Version"], "Statement": [s for s in policy["Statement"] if s["Resource"]]}

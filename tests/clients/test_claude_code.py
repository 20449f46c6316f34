"""Claude Code itself (the npm package pinned in package.json) through the gateway, in both of its modes.

Each run is hermetic: a throw-away HOME and config dir, nonessential traffic
(telemetry, error reports, update checks) switched off, and an HTTP(S) proxy
that refuses and records anything bound for outside localhost; each test
checks that nothing went there. Anthropic and Bedrock mode go through a
recording relay, so the tests see what Claude Code sent (headers, beta flags,
body fields) as well as what reached "Bedrock"; the tool turn talks to the
gateway directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack import EMULATOR_ACCESS_KEY_ID, Stack
from tests.clients.conftest import RequestLog
from tests.clients.wiretap import Exchange, Relay, Tripwire
from tests.integration.conftest import Emulator, Keys

HAIKU_BEDROCK_ID = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
RUN_TIMEOUT = 40  # seconds; a healthy run takes 1-3 s
SNIPPET_CHARS = 40  # the emulator answers "Emulated reply to: <first 40 characters of the last user message>"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self, *extra: str) -> str:
        return "\n".join([f"exit {self.returncode} after {self.seconds:.1f}s", f"stdout: {self.stdout[-3000:]}",
                          f"stderr: {self.stderr[-3000:]}", *extra])


def claude(binary: Path, args: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Run Claude Code in a session of its own, so that a hung run is ended with all it started (by group id)."""
    started = time.monotonic()
    with subprocess.Popen([str(binary), *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate(timeout=10)
            pytest.fail(Run(-1, out, err, time.monotonic() - started).explain(f"Claude Code hung past {RUN_TIMEOUT}s"))
    return Run(process.returncode, out, err, time.monotonic() - started)


def base_env(home: Path, tripwire: Tripwire) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell but PATH, nothing of their config."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        # No telemetry, error reporting, update checks or feature-flag fetches
        # (the first implies the other three; all are set in case it stops doing so).
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        # Fail fast instead of retrying with back-off, and never wait long for an answer.
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "API_TIMEOUT_MS": "30000",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        env[name] = tripwire.url
    return env


def anthropic_env(home: Path, tripwire: Tripwire, base_url: str, key: str) -> dict[str, str]:
    return {
        **base_env(home, tripwire),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": key,
        "ANTHROPIC_MODEL": "claude-haiku-4-5",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",  # the older name of the above, still read
    }


def bedrock_env(home: Path, tripwire: Tripwire, base_url: str, key: str) -> dict[str, str]:
    return {
        **base_env(home, tripwire),
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": f"{base_url}/bedrock",
        "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
        "ANTHROPIC_AUTH_TOKEN": key,
        "AWS_REGION": "us-east-1",
        "ANTHROPIC_MODEL": HAIKU_BEDROCK_ID,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": HAIKU_BEDROCK_ID,
        "ANTHROPIC_SMALL_FAST_MODEL": HAIKU_BEDROCK_ID,
    }


def workdir(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    return project


def normalized(text: str) -> str:
    """Streams re-split the emulator's text on whitespace; compare words, not spacing."""
    return " ".join(text.split())


def last_user_text(body: dict[str, Any]) -> str:
    """The emulator's view of the last user message: its texts joined by newlines.

    Claude Code puts ``<system-reminder>`` blocks before the prompt in the same
    message, so the emulator's snippet is the start of those, not of the prompt.
    """
    last = [m for m in body["messages"] if m["role"] == "user"][-1]
    content = last["content"]
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for block in content:
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            inner = block.get("content", "")
            texts += [inner] if isinstance(inner, str) else [b.get("text", "") for b in inner if b.get("type") == "text"]
    return "\n".join(texts)


def expected_reply(body: dict[str, Any]) -> str:
    return normalized(f"Emulated reply to: {last_user_text(body)[:SNIPPET_CHARS]}")


def check_upstream(emulator: Emulator, invocations: int) -> list[dict]:
    """Every request that reached "Bedrock" was signed with the gateway's credentials and carried no client
    header; ``invocations`` of them were model invocations (returned, in order)."""
    seen = emulator.requests()
    invoked = [r for r in seen if r["path"].split("/")[-1] in ("invoke", "invoke-with-response-stream")]
    assert len(invoked) == invocations, [(r["method"], r["path"], r["status"]) for r in seen]
    for record in seen:
        assert record["signature_valid"] is True, record
        assert record["access_key_id"] == EMULATOR_ACCESS_KEY_ID
        assert "x-api-key" not in record["headers"], record["headers"]
        assert record["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 "), record["headers"]
        assert not any(name.startswith(("anthropic-", "x-claude-code", "x-stainless")) for name in record["headers"])
    return invoked


def check_records(request_log: RequestLog, count: int, request_ids: set[str] | None = None) -> list[dict]:
    """The extproc metered each of Claude Code's ``count`` invocations to consumer alpha, tokens and all."""
    records = request_log.wait_for(count)
    mine = [r for r in records if r.get("user_agent", "").startswith("claude-cli/") and r["status"] == 200
            and (request_ids is None or r["request_id"] in request_ids)]
    assert len(mine) == count, records
    for record in mine:
        assert record["consumer"] == "alpha", record
        assert record["partial"] is False, record
        assert record["tokens"]["input"] > 0 and record["tokens"]["output"] > 0, record
    return mine


def conversation(relay: Relay, prompt: str) -> list[Exchange]:
    """Claude Code's requests that carry the conversation (not probes or listings)."""
    return [x for x in relay.exchanges if isinstance(x.body, dict) and isinstance(x.body.get("messages"), list)
            and prompt in json.dumps(x.body["messages"])]


def test_anthropic_mode_answers_a_prompt(stack: Stack, emulator: Emulator, keys: Keys, relay: Relay,
                                         tripwire: Tripwire, request_log: RequestLog, claude_bin: Path,
                                         tmp_path: Path) -> None:
    prompt = "Say hello to the gateway team, briefly please"
    run = claude(claude_bin, ["-p", prompt], anthropic_env(tmp_path / "home", tripwire, relay.url, keys.alpha),
                 workdir(tmp_path))
    print(relay.describe())  # shown on failure (and with -rP): what Claude Code sent and got
    assert run.returncode == 0, run.explain(relay.describe())

    # Every request Claude Code made (probes and token counts included, if any) was answered.
    assert relay.exchanges and all(x.status is not None and x.status < 400 for x in relay.exchanges), relay.describe()
    calls = conversation(relay, prompt)
    assert calls, relay.describe()
    for call in calls:
        assert call.path.split("?")[0] == "/v1/messages"
        assert call.credential == keys.alpha and "authorization" not in call.headers
        assert call.body["model"] == "claude-haiku-4-5"
    final = calls[-1].body
    assert last_user_text(final).endswith(prompt), "Claude Code's reminders come first, the prompt last"
    assert expected_reply(final) in normalized(run.stdout), run.explain()

    invoked = [x for x in relay.exchanges if x.path.split("?")[0] == "/v1/messages"]
    check_upstream(emulator, invocations=len(invoked))
    records = check_records(request_log, len(invoked), {x.request_id for x in invoked if x.request_id})
    assert {r["bedrock_model"] for r in records} == {HAIKU_BEDROCK_ID}
    assert tripwire.seen == [], "Claude Code tried to reach outside localhost"


def test_anthropic_mode_tool_turn(stack: Stack, emulator: Emulator, keys: Keys, tripwire: Tripwire,
                                  request_log: RequestLog, claude_bin: Path, tmp_path: Path) -> None:
    """The emulator asks for Glob; Claude Code runs it here and sends the result back; then it answers.

    Straight to the gateway, no relay. The emulator fills every tool argument
    with "emulated", so Glob searches the directory ``emulated`` for files named
    ``emulated``, and finds the one made here.
    """
    project = workdir(tmp_path)
    (project / "emulated").mkdir()
    (project / "emulated" / "emulated").write_text("found by Glob\n")
    run = claude(
        claude_bin,
        ["-p", "List the files please [[emulator:tool=Glob]]", "--tools", "Glob", "--allowedTools", "Glob",
         "--output-format", "stream-json", "--verbose"],
        anthropic_env(tmp_path / "home", tripwire, stack.url, keys.alpha), project)
    assert run.returncode == 0, run.explain()
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    blocks = [(e["type"], block) for e in events if e.get("type") in ("assistant", "user")
              for block in (e["message"]["content"] if isinstance(e["message"]["content"], list) else [])]
    (tool_use,) = [b for kind, b in blocks if kind == "assistant" and b["type"] == "tool_use"]
    assert tool_use["name"] == "Glob" and tool_use["id"].startswith("toolu_bdrk_"), tool_use
    (tool_result,) = [b for kind, b in blocks if kind == "user" and b["type"] == "tool_result"]
    assert tool_result["tool_use_id"] == tool_use["id"] and not tool_result.get("is_error"), tool_result
    assert "emulated/emulated" in json.dumps(tool_result["content"]), "Glob ran and found the file"
    (result,) = [e for e in events if e.get("type") == "result"]
    assert result["subtype"] == "success" and result["is_error"] is False and result["num_turns"] == 2, result
    # The second answer quotes the start of its last user message: Glob's output.
    assert normalized(result["result"]).startswith("Emulated reply to: emulated/emulated"), result["result"]

    first, second = check_upstream(emulator, invocations=2)
    first_body, second_body = json.loads(first["body"]), json.loads(second["body"])  # small enough to be kept
    assert [t["name"] for t in first_body["tools"]] == ["Glob"]
    assert "[[emulator:tool=Glob]]" in last_user_text(first_body)
    results = [b for m in second_body["messages"] if isinstance(m["content"], list) for b in m["content"]
               if b.get("type") == "tool_result"]
    assert [b["tool_use_id"] for b in results] == [tool_use["id"]]
    records = check_records(request_log, 2)
    assert {r["bedrock_model"] for r in records} == {HAIKU_BEDROCK_ID}
    assert tripwire.seen == [], "Claude Code tried to reach outside localhost"


def test_bedrock_mode_answers_a_prompt(stack: Stack, emulator: Emulator, keys: Keys, relay: Relay,
                                       tripwire: Tripwire, request_log: RequestLog, claude_bin: Path,
                                       tmp_path: Path) -> None:
    prompt = "Say hello to the gateway team, via Bedrock"
    run = claude(claude_bin, ["-p", prompt], bedrock_env(tmp_path / "home", tripwire, relay.url, keys.alpha),
                 workdir(tmp_path))
    print(relay.describe())
    assert run.returncode == 0, run.explain(relay.describe())

    # Claude Code lists inference profiles with the AWS SDK, which sends no credential at all under
    # CLAUDE_CODE_SKIP_BEDROCK_AUTH: a 401 there is expected, and Claude Code falls back to its own list.
    profiles = [x for x in relay.exchanges if x.path.startswith("/bedrock/inference-profiles")]
    assert all(x.status in (200, 401) for x in profiles), relay.describe()
    others = [x for x in relay.exchanges if x not in profiles]
    assert all(x.status is not None and x.status < 500 for x in others), relay.describe()

    calls = conversation(relay, prompt)
    assert calls, relay.describe()
    for call in calls:
        assert call.status == 200, relay.describe()
        assert call.path.replace("%3A", ":") == f"/bedrock/model/{HAIKU_BEDROCK_ID}/invoke-with-response-stream", (
            "Claude Code streams; a fallback to /invoke means the stream route failed\n" + relay.describe())
        assert call.response_headers["content-type"] == "application/vnd.amazon.eventstream"
        assert call.credential == keys.alpha and call.headers["authorization"] == "Bearer <redacted>"
        assert call.body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in call.body
    final = calls[-1].body
    assert last_user_text(final).endswith(prompt)
    assert expected_reply(final) in normalized(run.stdout), run.explain()

    answered = [x for x in others if "/model/" in x.path and x.status == 200]
    check_upstream(emulator, invocations=len(answered))
    records = check_records(request_log, len(answered), {x.request_id for x in answered if x.request_id})
    assert {r["bedrock_model"] for r in records if r["request_id"] in {c.request_id for c in calls}} == {
        HAIKU_BEDROCK_ID}
    assert tripwire.seen == [], "Claude Code tried to reach outside localhost"

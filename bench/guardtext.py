"""The request bodies the guardrail cost is measured on, built deterministically (no file, no randomness
across runs, nothing read from the repository but the labelled corpus).

- :func:`prose_body`: about 100 KB of plain e-commerce support prose in one
  user message; dates, prices, quantities and short order references, but
  nothing any detector finds (checked by :mod:`bench.guardcost`).
- :func:`dense_body`: the texts of ``tests/unit/guardrails/corpus.jsonl``
  joined and repeated to about 100 KB in one user message, as
  ``tests/unit/guardrails/test_throughput.py`` does: a card, IBAN, phone,
  secret or attack on most lines, far denser than real traffic.
- :func:`agent_body`: a coding agent's first request, shaped and sized like
  Claude Code's (about 87 KB of JSON): a long system prompt in two blocks,
  eighteen tool definitions with long descriptions and JSON schemas, and a
  user turn with project notes in a ``<system-reminder>`` and the task. Every
  word is written here (a phrase book combined by a seeded generator); it is
  not Claude Code's text, only its shape: many strings, most of them short.

A body's size is counted in bytes of compact UTF-8 JSON, what the gateway receives.
"""

from __future__ import annotations

import json
import random
from typing import Any

from devstack import ROOT

from .payload import MODEL

CORPUS = ROOT / "tests" / "unit" / "guardrails" / "corpus.jsonl"
TEXT_BYTES = 100_000
AGENT_BYTES = 87_000

DENY_KEYWORDS = ("competitorshop", "project falcon", "wettbewerber")
DENY_PATTERNS = (r"\bHX-\d{4}\b",)
"""The corpus's own deny lists, so that the deny detector has something to look for."""


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _user_body(text: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": text}]}


def _fill(rng: random.Random, phrases: tuple[str, ...], size: int, joiner: str = " ") -> str:
    """Phrases drawn by ``rng`` until ``size`` characters (never cut mid-phrase)."""
    parts: list[str] = []
    length = 0
    while length < size:
        phrase = rng.choice(phrases)
        parts.append(phrase)
        length += len(phrase) + len(joiner)
    return joiner.join(parts)


# -- (i) plain support prose ----------------------------------------------------------------------

_SUPPORT = (
    "Thank you for getting in touch about your recent order.",
    "I am sorry to hear that the parcel arrived later than we promised.",
    "Our warehouse shipped the package on Tuesday and the courier scanned it the same evening.",
    "According to the tracking page it is now at the regional depot and should reach you within two working days.",
    "If it has not arrived by Friday, please reply to this message and we will send a replacement at no cost.",
    "The jacket you ordered is available in sizes small to extra large, and the blue one is back in stock.",
    "Returns are free within 30 days of delivery as long as the item is unused and in its original packaging.",
    "You can print the return label from your account page under Orders and then Returns.",
    "Once the item reaches us, the refund usually shows on your statement within five to seven days.",
    "We have applied a voucher worth 10 euros to your account as an apology for the delay.",
    "The voucher is valid until the end of March and can be combined with the spring sale.",
    "Could you tell me whether the box was damaged when it arrived, or only the item inside?",
    "A photo of the label and of the damage would help our team process the claim faster.",
    "The coffee grinder comes with a two year warranty that covers the motor and the burrs.",
    "For the espresso machine, descaling every six weeks keeps the warranty valid.",
    "I have passed your feedback about the checkout page on to our web team.",
    "Orders placed before 3 pm on a weekday leave the warehouse on the same day.",
    "Express delivery costs 6.90 and standard delivery is free for orders over 49.",
    "Unfortunately we cannot change the delivery address once the parcel has left the warehouse.",
    "You can, however, ask the courier to hold it at a nearby pickup point for up to ten days.",
    "The size guide on the product page lists chest, waist and sleeve measurements in centimetres.",
    "Most customers find that the trainers run slightly small, so half a size up is a safe choice.",
    "The bundle discount applies automatically when three or more items from the range are in the basket.",
    "I can see that your account is set up for paper invoices; would you prefer them by post from now on?",
    "Gift wrapping is available for most items and costs 3.50 per parcel.",
    "Our customer service team is available Monday to Saturday from 8 am to 8 pm.",
    "The replacement will be sent with tracked delivery, and you do not need to return the faulty one.",
    "Please keep the original receipt, as the manufacturer may ask for it if the device needs repair.",
    "The pre-order for the new headphones opens next Thursday and ships in the first week of May.",
    "We do not store any payment details in our chat system, so there is no need to share them here.",
    "Your loyalty points will be credited once the return window for this order has closed.",
    "The item was listed with the wrong colour in the photos, and we have corrected the product page.",
    "I completely understand your frustration and I will follow this up personally until it is resolved.",
    "If you would rather exchange the sofa cover than return it, we can arrange a collection on Wednesday.",
    "The assembly instructions for the bookshelf are also available as a download on the product page.",
    "Our stores in Leeds and Bristol can check stock for you if you would like to collect the item in person.",
    "The price match applies to identical items sold by a national retailer within seven days of purchase.",
    "Thanks again for your patience, and have a lovely weekend.",
    "Kind regards from the customer care team.",
)


def support_prose(size: int = TEXT_BYTES) -> str:
    """Paragraphs of three to six support sentences, about ``size`` characters (ASCII)."""
    rng = random.Random(20251)
    paragraphs: list[str] = []
    length = 0
    while length < size:
        paragraph = " ".join(rng.choice(_SUPPORT) for _ in range(rng.randint(3, 6)))
        paragraphs.append(paragraph)
        length += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:size].rpartition(" ")[0]


def prose_body() -> dict[str, Any]:
    return _user_body(support_prose())


# -- (ii) the labelled corpus, dense with findings ----------------------------------------------------


def corpus_text(size: int = TEXT_BYTES) -> str:
    """The corpus texts, one a line, repeated to ``size`` characters."""
    lines = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    text = "\n".join(lines)
    while len(text) < size:
        text += "\n" + text
    return text[:size]


def dense_body() -> dict[str, Any]:
    return _user_body(corpus_text())


# -- (iii) a coding agent's request ---------------------------------------------------------------------

_GUIDANCE = (
    "Keep answers short and direct; the user reads them in a terminal.",
    "Before changing code, read the files involved and follow the conventions you find there.",
    "Prefer editing an existing file to creating a new one, and never create documentation unless asked.",
    "When a task has several steps, write them down as a plan and mark each one done as you finish it.",
    "Run the project's tests after a change and report honestly whether they pass.",
    "Do not guess library versions: look at the lock file or the package manifest first.",
    "Use the search tools to find where a symbol is defined before you assume its behaviour.",
    "Explain what a shell command does before running anything that changes the system.",
    "Never commit changes unless the user explicitly asks for a commit.",
    "When you refer to code, give the file path and line number, such as `src/cart/totals.py:118`.",
    "If a request is ambiguous, ask one precise question instead of guessing.",
    "Match the style of the surrounding code: naming, formatting, error handling and comments.",
    "Do not add comments that merely restate what the code does.",
    "Treat test failures as information: read the assertion and the traceback before editing anything.",
    "Avoid long-running commands in the foreground; start servers in the background and poll their output.",
    "Batch independent tool calls together so that they run in parallel.",
    "Use absolute paths in tool calls; relative paths depend on a working directory that may change.",
    "Summarise what you changed at the end, in two or three sentences, with the files touched.",
    "When the user asks how something works, answer from the code you read, not from memory.",
    "Respect the repository's lint and type-check configuration, and run them when they exist.",
    "Security matters: do not write code that logs credentials or disables certificate checks.",
    "Keep diffs minimal and focused on the task; unrelated clean-ups belong in a separate change.",
    "If a command fails, read its error output and try a different approach rather than repeating it.",
    "Large files should be read in ranges with an offset and a limit instead of all at once.",
    "The user can see tool output, so do not paste long command output back into your answer.",
)

_TOOL_NOTES = (
    "The path must be absolute, for example `/home/dev/shop-api/src/checkout/service.py`.",
    "Output longer than 30000 characters is truncated; narrow the query if that happens.",
    "Results are sorted by modification time, newest first.",
    "Use this tool instead of running the equivalent shell command, which is slower and harder to read.",
    "Lines are numbered starting at 1, in the same format as `cat -n`.",
    "Quote paths that contain spaces, for instance `cd \"/home/dev/My Projects\"`.",
    "The pattern uses ripgrep syntax, so literal braces need escaping: `interface\\{\\}`.",
    "Set a timeout in milliseconds for commands that may take long; the maximum is ten minutes.",
    "This tool can read images and PDF files as well as text.",
    "The edit fails if `old_string` is not unique in the file; include more surrounding context.",
    "Prefer several small, precise edits to rewriting a whole file.",
    "When searching for a class or function definition, a glob on the file name is often faster.",
    "Each task in the list has a status: pending, in_progress or completed; only one is in progress at a time.",
    "Fetched pages are converted to markdown and summarised; a redirect to another host is reported, not followed.",
    "The query must be at least two characters long; results include titles and links.",
    "A sub-agent starts with no memory of this conversation, so give it every detail it needs.",
    "Use `git status` and `git diff --stat` to see what changed before writing a summary.",
    "Examples: `**/*.py`, `src/**/test_*.ts`, `docs/*.md`.",
    "Cells are addressed by their index; a new cell is inserted after the given one.",
    "The command runs in a persistent shell, so environment variables and the working directory carry over.",
    "Never use interactive flags such as `git rebase -i`, which wait for input that cannot be given.",
    "Write the complete file content; the tool does not merge with what is already there.",
    "Returns the matching lines with two lines of context when `output_mode` is `content`.",
    "Background commands keep running after the call returns; read their output with the output tool.",
)

_TOOLS = (
    ("Task", {"description": "a short description of the task", "prompt": "the complete task for the agent",
              "subagent_type": "which kind of agent to start"}),
    ("Bash", {"command": "the shell command to run", "timeout": "timeout in milliseconds",
              "description": "what the command does, in a few words", "run_in_background": "run it in the background"}),
    ("Glob", {"pattern": "the glob pattern to match file names against", "path": "the directory to search in"}),
    ("Grep", {"pattern": "the regular expression to search for", "path": "file or directory to search",
              "glob": "only search files matching this glob", "output_mode": "what to return",
              "case_insensitive": "ignore case", "context_lines": "lines of context around each match",
              "head_limit": "return at most this many results", "multiline": "let patterns span lines"}),
    ("LS", {"path": "the absolute path of the directory", "ignore": "glob patterns to leave out"}),
    ("ExitPlanMode", {"plan": "the plan to present to the user, in markdown"}),
    ("Read", {"file_path": "the absolute path of the file", "offset": "first line to read",
              "limit": "how many lines to read"}),
    ("Edit", {"file_path": "the absolute path of the file", "old_string": "the exact text to replace",
              "new_string": "the text to put in its place", "replace_all": "replace every occurrence"}),
    ("MultiEdit", {"file_path": "the absolute path of the file", "edits": "the edits, applied in order"}),
    ("Write", {"file_path": "the absolute path of the file", "content": "the complete content to write"}),
    ("NotebookEdit", {"notebook_path": "the absolute path of the notebook", "cell_id": "the cell to change",
                      "new_source": "the new source of the cell", "cell_type": "code or markdown",
                      "edit_mode": "replace, insert or delete"}),
    ("WebFetch", {"url": "the address to fetch", "prompt": "what to extract from the page"}),
    ("TodoWrite", {"todos": "the updated task list"}),
    ("WebSearch", {"query": "the search query", "allowed_domains": "only results from these domains",
                   "blocked_domains": "never results from these domains"}),
    ("BashOutput", {"bash_id": "the background shell to read from", "filter": "only lines matching this"}),
    ("KillShell", {"shell_id": "the background shell to stop"}),
    ("SlashCommand", {"command": "the slash command with its arguments"}),
    ("ListMcpResources", {"server": "only resources of this server"}),
)

_NOTES = (
    "# Shop API\n\nPython 3.12 service behind the storefront: carts, checkout, discounts and order history.",
    "## Commands\n\n- `make test` runs the unit tests (pytest, about 40 s).\n- `make lint` runs ruff and mypy.\n"
    "- `make run` starts the API on port 8080 with a local Postgres in Docker.",
    "## Layout\n\n- `src/cart/`: cart model, totals, tax rules.\n- `src/checkout/`: payment intents, order creation.\n"
    "- `src/discounts/`: codes, bundles, loyalty points.\n- `tests/`: mirrors `src/`, fixtures in `tests/fixtures/`.",
    "## Conventions\n\n- Money is `Decimal` in minor units, never float.\n- Every public function has a type-annotated "
    "signature and a docstring.\n- Database access goes through the repository classes in `src/db/`.",
    "## Gotchas\n\n- Discount codes are case-insensitive but stored upper-case.\n- The tax table is cached for five "
    "minutes; tests clear it with the `fresh_tax_table` fixture.",
    "```python\nclass CartTotals:\n    def __init__(self, lines: list[Line], discount: Discount | None) -> None:\n"
    "        self.lines = lines\n        self.discount = discount\n\n    def subtotal(self) -> Decimal:\n"
    "        return sum((line.price * line.quantity for line in self.lines), Decimal(0))\n```",
    "Recent commits:\n9f1c2ab Apply bundle discounts before loyalty points\n4d7e0c1 Round tax per line, not per cart\n"
    "b3a9e57 Checkout: retry payment intent creation once on timeout",
    "Status:\nM src/discounts/codes.py\nM tests/discounts/test_codes.py\n?? notes/discount-bug.md",
)


def _tool(rng: random.Random, name: str, properties: dict[str, str], size: int) -> dict[str, Any]:
    description = f"{name}: " + _fill(rng, _TOOL_NOTES, size)
    schema_properties: dict[str, Any] = {}
    for prop, text in properties.items():
        kind = ("integer" if prop in ("timeout", "offset", "limit", "context_lines", "head_limit")
                else "boolean" if prop in ("run_in_background", "replace_all", "case_insensitive", "multiline")
                else "array" if prop in ("edits", "todos", "ignore", "allowed_domains", "blocked_domains")
                else "string")
        entry: dict[str, Any] = {"type": kind, "description": f"{text[0].upper()}{text[1:]}. "
                                 + _fill(rng, _TOOL_NOTES, rng.randint(0, 240))}
        if prop == "output_mode":
            entry["enum"] = ["content", "files_with_matches", "count"]
        if kind == "array":
            entry["items"] = {"type": "string"} if prop in ("ignore", "allowed_domains", "blocked_domains") else {
                "type": "object", "additionalProperties": False, "required": ["content", "status"],
                "properties": {"content": {"type": "string", "minLength": 1},
                               "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]}}}
        schema_properties[prop] = entry
    return {"name": name, "description": description, "input_schema": {
        "type": "object", "properties": schema_properties, "required": list(properties)[:1],
        "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}


def agent_body(size: int = AGENT_BYTES) -> dict[str, Any]:
    """A coding agent's first request of a session, about ``size`` bytes (the parts scaled from 87 KB)."""
    rng = random.Random(87)
    scale = size / AGENT_BYTES
    sections = ("# Tone and style", "# Doing tasks", "# Following conventions", "# Tool use", "# Code references",
                "# Planning", "# Testing", "# Safety")
    system_text = "\n\n".join(f"{title}\n- " + _fill(rng, _GUIDANCE, int(1_700 * scale), "\n- ") for title in sections)
    system_text += ("\n\n<env>\nWorking directory: /home/dev/shop-api\nIs directory a git repo: Yes\n"
                    "Platform: linux\nOS Version: Linux 6.8.0-45-generic\nToday's date: 2025-11-04\n</env>")
    tools = [_tool(rng, name, properties, int(2_520 * scale)) for name, properties in _TOOLS]
    notes = "\n\n".join(_NOTES)
    reminder = ("<system-reminder>\nAs you answer the user's questions, you can use the following context:\n"
                f"# Project notes (/home/dev/shop-api/NOTES.md)\n\n{notes}\n\n"
                + _fill(rng, _GUIDANCE, int(8_500 * scale), "\n") + "\n</system-reminder>")
    task = ("The checkout endpoint answers 500 when the cart holds a discount code in lower case and a bundle at "
            "the same time. Find out why, fix it, and add a regression test next to the existing discount tests.")
    return {
        "model": MODEL,
        "max_tokens": 32_000,
        "stream": True,
        "temperature": 1,
        "system": [
            {"type": "text", "text": "You are a coding agent working in the user's terminal.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": system_text, "cache_control": {"type": "ephemeral"}},
        ],
        "tools": tools,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": reminder},
            {"type": "text", "text": task, "cache_control": {"type": "ephemeral"}},
        ]}],
        "metadata": {"user_id": "user_5b0e3f1c2a_account__session_7d3e9a41-2f0b-4c55-9a1e-0c6b2f8d4e17"},
    }


def small_body() -> dict[str, Any]:
    """One short user message: what a call costs before any text is scanned."""
    return _user_body("Hello, where is my parcel? It was due on Monday.")


def strings_in(node: Any) -> int:
    """How many strings a JSON value holds (keys not counted): an upper bound of what a policy scans."""
    if isinstance(node, dict):
        return sum(strings_in(v) for v in node.values())
    if isinstance(node, list):
        return sum(strings_in(v) for v in node)
    return 1 if isinstance(node, str) else 0

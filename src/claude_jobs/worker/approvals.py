"""Approvals, the worker's side (docs/worker.md, "Approvals (mechanism)"): a tool call that
matches one of a job's approval rules is deferred before it runs, and a person's decision is
carried out on the session's transcript.

- `matching_rule` matches a call against rules in the `allowed_tools` syntax (`"Bash"`,
  `"Bash(git push:*)"`, `"Write(src/**)"`).
- `ApprovalGate.pre_tool_use` is the PreToolUse hook: it answers `defer` for a matching call
  and remembers it (`DeferredCall`); the CLI then stops before the call executes and reports
  `stop_reason` `tool_deferred` (`deferred_from_result`).
- Allow: resume the session with the call's id approved (`ApprovalGate(approved=…)`), sending
  no prompt (waiting.py). The resumed CLI (2.1.330) runs the deferred call, re-emitting it
  through PreToolUse or not (both seen): a gate that deferred it again would have the CLI
  answer it "Tool result missing" instead of running it.
- Deny (or a question's answers): `settle_entries` drops the call's `hook_deferred_tool`
  attachment and appends its `tool_result` (error: the denial); the gate also answers `deny`
  should the CLI emit the call again. Settling again finds the call answered: idempotent.
- Never resume a deferred session before a decision: the call may run unasked. A deferral
  nobody decided on is denied when another job continues the session.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..approval_models import ASK_USER_QUESTION
from ..job_options import tool_base_name

#: The most of a call's input shown with its approval.
MAX_INPUT_DISPLAY_BYTES = 2048
#: The transcript attachment that makes a resumed CLI run a deferred call (CLI 2.1.330).
DEFERRED_ATTACHMENT = "hook_deferred_tool"
#: The `stop_reason` of a run stopped by a deferred call.
TOOL_DEFERRED = "tool_deferred"

_RULE_RE = re.compile(r"^(?P<name>[^()]+?)(?:\((?P<content>.*)\))?$", re.DOTALL)
# Bash: a compound command matches when any of its parts does.
_BASH_SPLIT = re.compile(r"\|\||&&|[;|&\n]")


@dataclass(frozen=True)
class DeferredCall:
    """A tool call stopped for approval: its id, tool, input (JSON, at most 2 KiB, for
    display) and the rule it matched (None: deferred by the CLI without a known rule)."""

    tool_use_id: str
    tool: str
    input: str
    rule: str | None = None


def display_input(tool_input: Any) -> str:
    """A call's input as compact JSON, cut to `MAX_INPUT_DISPLAY_BYTES` (UTF-8)."""
    text = json.dumps(tool_input, ensure_ascii=False, separators=(",", ":"), default=str)
    data = text.encode("utf-8")
    if len(data) <= MAX_INPUT_DISPLAY_BYTES:
        return text
    return data[: MAX_INPUT_DISPLAY_BYTES - 3].decode("utf-8", errors="ignore") + "…"


def _glob(pattern: str, value: str) -> bool:
    return fnmatchcase(value, pattern.replace("**", "*"))


def _bash_matches(content: str, command: str) -> bool:
    prefix = content[:-2] if content.endswith(":*") else None
    parts = [command.strip(), *(p.strip() for p in _BASH_SPLIT.split(command))]
    for part in filter(None, parts):
        if prefix is not None:
            if part == prefix or part.startswith(prefix + " "):
                return True
        elif _glob(content, part) if "*" in content else part == content:
            return True
    return False


def _content_matches(tool: str, content: str, tool_input: dict[str, Any]) -> bool:
    if tool == "Bash":
        return _bash_matches(content, str(tool_input.get("command", "")))
    if tool == "WebFetch" and content.startswith("domain:"):
        host = urlsplit(str(tool_input.get("url", ""))).hostname or ""
        return _glob(content.removeprefix("domain:"), host)
    for field in ("file_path", "notebook_path", "path", "url", "pattern"):
        value = tool_input.get(field)
        if isinstance(value, str) and (
            _glob(content, value) or _glob(content, value.lstrip("/")) or value == content
        ):
            return True
    return False


def rule_matches(rule: str, tool: str, tool_input: dict[str, Any]) -> bool:
    """Whether a call of `tool` with `tool_input` falls under `rule` (`allowed_tools` syntax).
    A rule without content matches every call of its tool; `Bash(prefix:*)` matches commands
    starting with the prefix, `Bash(cmd)` the exact command (`*` a wildcard) — a compound
    command when any part does; other tools' content is a glob on their path or URL."""
    match = _RULE_RE.match(rule.strip())
    if match is None or tool_base_name(match["name"].strip()) != tool:
        return False
    content = match["content"]
    if content is None or content.strip() in ("", "*"):
        return True
    return _content_matches(tool, content.strip(), tool_input)


def matching_rule(rules: Iterable[str], tool: str, tool_input: dict[str, Any]) -> str | None:
    """The first of `rules` the call falls under, or None."""
    return next((rule for rule in rules if rule_matches(rule, tool, tool_input)), None)


class ApprovalGate:
    """The PreToolUse hook of a run with approval rules: defers the first matching call (and
    every `AskUserQuestion` call when `ask_questions`); answers `deny` for a call a person
    denied (`denied`: id → message), should the resumed CLI emit it again."""

    def __init__(
        self,
        rules: Sequence[str],
        approved: Iterable[str] = (),
        *,
        denied: Mapping[str, str] | None = None,
        ask_questions: bool = False,
    ) -> None:
        self.rules = tuple(rules)
        #: Ids of calls a person allowed: they run.
        self.approved = frozenset(approved)
        self.denied = dict(denied or {})
        self.ask_questions = ask_questions
        self.deferred: DeferredCall | None = None

    def check(self, data: Any, tool_use_id: str | None) -> dict[str, Any] | None:
        """The hook's answer for a call: `deny` for a denied one, `defer` when it matches a
        rule (or is a question), else None."""
        if not isinstance(data, dict):
            return None
        tool = str(data.get("tool_name", ""))
        tool_input = data.get("tool_input")
        tool_input = tool_input if isinstance(tool_input, dict) else {}
        call_id = tool_use_id or str(data.get("tool_use_id", ""))
        if call_id in self.denied:
            return _answer("deny", self.denied[call_id])
        if call_id in self.approved:
            return None
        if self.ask_questions and tool == ASK_USER_QUESTION:
            self.deferred = DeferredCall(call_id, tool, display_input(tool_input), None)
            return _answer("defer", "waits for the caller's answer")
        rule = matching_rule(self.rules, tool, tool_input)
        if rule is None:
            return None
        self.deferred = DeferredCall(call_id, tool, display_input(tool_input), rule)
        return _answer("defer", f"waits for approval ({rule})")

    async def pre_tool_use(self, data: Any, tool_use_id: str | None, context: Any) -> Any:
        return self.check(data, tool_use_id) or {}


def _answer(decision: str, reason: str) -> dict[str, Any]:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }
    }


def deferred_from_result(result: Any, gate: ApprovalGate | None = None) -> DeferredCall | None:
    """The call a run's `ResultMessage` says was deferred (None: the run was not stopped by a
    deferral); the gate's record supplies the rule it matched."""
    if getattr(result, "stop_reason", None) != TOOL_DEFERRED:
        return None
    used = getattr(result, "deferred_tool_use", None)
    known = gate.deferred if gate is not None else None
    if used is None:
        return known
    rule = known.rule if known is not None and known.tool_use_id == used.id else None
    return DeferredCall(str(used.id), str(used.name), display_input(used.input), rule)


# ------------------------------------------------------------ denial in the transcript


def _is_deferral_of(entry: dict[str, Any], tool_use_id: str) -> bool:
    attachment = entry.get("attachment")
    return (
        entry.get("type") == "attachment"
        and isinstance(attachment, dict)
        and attachment.get("type") == DEFERRED_ATTACHMENT
        and attachment.get("toolUseID") == tool_use_id
    )


def _calls(entry: dict[str, Any], tool_use_id: str) -> bool:
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return (
        entry.get("type") == "assistant"
        and isinstance(content, list)
        and any(
            isinstance(b, dict) and b.get("type") == "tool_use" and b.get("id") == tool_use_id
            for b in content
        )
    )


def result_entry(
    call: dict[str, Any],
    tool_use_id: str,
    content: str,
    *,
    is_error: bool,
    now: datetime | None = None,
    new_uuid: str | None = None,
) -> dict[str, Any]:
    """A user entry carrying the `tool_result` of `call`'s `tool_use_id` (its parent: `call`,
    the assistant entry that made it), in the CLI's transcript format."""
    stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    entry: dict[str, Any] = {
        "parentUuid": call.get("uuid"),
        "isSidechain": False,
        "type": "user",
        "message": {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_use_id,
                    "content": content,
                    "is_error": is_error,
                }
            ],
        },
        "uuid": new_uuid or str(uuid.uuid4()),
        "timestamp": stamp,
    }
    for key in ("userType", "entrypoint", "cwd", "sessionId", "version", "gitBranch"):
        if key in call:
            entry[key] = call[key]
    return entry


def deny_entries(
    entries: Sequence[dict[str, Any]],
    tool_use_id: str,
    message: str,
    *,
    now: datetime | None = None,
    new_uuid: str | None = None,
) -> list[dict[str, Any]]:
    """The transcript with the deferred call `tool_use_id` denied: its `hook_deferred_tool`
    attachment dropped and a user entry appended whose error `tool_result` carries `message`
    (so a resumed CLI does not run the call and the model sees the denial). Raises ValueError
    when the transcript has no deferral of that call."""
    if not any(_is_deferral_of(e, tool_use_id) for e in entries):
        raise ValueError(f"the transcript has no deferred call {tool_use_id}")
    call = next((e for e in reversed(entries) if _calls(e, tool_use_id)), None)
    if call is None:
        raise ValueError(f"the transcript has no assistant entry calling {tool_use_id}")
    kept = [dict(e) for e in entries if not _is_deferral_of(e, tool_use_id)]
    denial = result_entry(call, tool_use_id, message, is_error=True, now=now, new_uuid=new_uuid)
    return [*kept, denial]


# ------------------------------------------------------------ decisions on a resumed session

#: What the model sees for a deferred call nobody decided on (it was made by a job that ended
#: before a decision, and the session is continued by another job).
UNDECIDED_DENIAL = "This call was not approved: the job that made it ended before a decision."


@dataclass(frozen=True)
class Settled:
    """A transcript with every deferred call settled (`settle_entries`)."""

    entries: list[dict[str, Any]]
    #: The tool-result entries appended (to be stored before the CLI resumes).
    added: list[dict[str, Any]]
    #: The deferrals left waiting (undecided calls of the job itself): (id, tool, input).
    waiting: list[tuple[str, str, dict[str, Any]]]
    #: Whether the transcript changed (an attachment dropped, a result added).
    changed: bool
    #: Ids of the allowed calls the resumed CLI is to run (their deferrals kept).
    runs: list[str]


def _is_deferral(entry: dict[str, Any]) -> bool:
    attachment = entry.get("attachment")
    return (
        entry.get("type") == "attachment"
        and isinstance(attachment, dict)
        and attachment.get("type") == DEFERRED_ATTACHMENT
    )


def answered_calls(entries: Iterable[dict[str, Any]]) -> set[str]:
    """Ids of the calls whose `tool_result` the transcript holds."""
    found: set[str] = set()
    for entry in entries:
        message = entry.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if entry.get("type") != "user" or not isinstance(content, list):
            continue
        found.update(
            str(b.get("tool_use_id"))
            for b in content
            if isinstance(b, dict) and b.get("type") == "tool_result"
        )
    return found


def settle_entries(
    entries: Sequence[dict[str, Any]],
    decided: Mapping[str, tuple[str, bool] | None],
    *,
    own: bool,
    now: datetime | None = None,
) -> Settled:
    """The transcript ready for a resume: no deferred call may run unless a person allowed it.

    For each `hook_deferred_tool` attachment (the entry that makes a resumed CLI run the call):
    a call the transcript already answers → the attachment dropped (idempotent: a decision
    carried out before, or an allowed call that ran); `decided[id]` None → allowed, kept;
    `decided[id]` = (content, is_error) → dropped and that tool result appended (a denial, or
    a question's answers); undecided and `own` (the job's own call, its wait not recorded) →
    kept and reported `waiting`; undecided otherwise → dropped and denied (`UNDECIDED_DENIAL`)."""
    answered = answered_calls(entries)
    kept: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    waiting: list[tuple[str, str, dict[str, Any]]] = []
    settled: set[str] = set()
    runs: list[str] = []
    for entry in entries:
        if not _is_deferral(entry):
            kept.append(entry)
            continue
        attachment = entry["attachment"]
        call_id = str(attachment.get("toolUseID"))
        if call_id in answered or call_id in settled:
            continue  # done before (or a second attachment of the call): nothing to run
        if call_id in decided and decided[call_id] is None:
            kept.append(entry)  # allowed: the resumed CLI runs it
            runs.append(call_id)
            continue
        if call_id not in decided and own:
            kept.append(entry)
            tool_input = attachment.get("toolInput")
            waiting.append(
                (
                    call_id,
                    str(attachment.get("toolName", "")),
                    tool_input if isinstance(tool_input, dict) else {},
                )
            )
            continue
        settled.add(call_id)
        content, is_error = decided.get(call_id) or (UNDECIDED_DENIAL, True)
        call = next((e for e in reversed(entries) if _calls(e, call_id)), None)
        if call is None:  # no call to answer: nothing would run it either
            continue
        added.append(result_entry(call, call_id, content, is_error=is_error, now=now))
    changed = bool(added) or len(kept) != len(entries)
    return Settled([*kept, *added], added, waiting, changed, runs)


def answers_text(answers: Mapping[str, str], message: str | None = None) -> str:
    """The tool result of an `AskUserQuestion` call the caller answered."""
    lines = ", ".join(f'"{q}"="{a}"' for q, a in answers.items())
    text = f"User has answered your questions: {lines}. You can now continue with the user's "
    text += "answers in mind."
    return f"{text}\n{message}" if message else text


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """A transcript file's entries (lines that are not JSON objects are dropped)."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def deny_in_transcript(
    transcript: Path | Sequence[dict[str, Any]], tool_use_id: str, message: str
) -> list[dict[str, Any]]:
    """Deny a deferred call in a transcript: entries → the new entries (`deny_entries`); a
    file → rewritten in place (same mode), the new entries returned."""
    if not isinstance(transcript, Path):
        return deny_entries(transcript, tool_use_id, message)
    entries = deny_entries(read_transcript(transcript), tool_use_id, message)
    mode = transcript.stat().st_mode & 0o777
    text = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries)
    staged = transcript.with_name(transcript.name + ".deny")
    staged.write_text(text, encoding="utf-8")
    staged.chmod(mode)
    staged.replace(transcript)
    return entries

"""Approvals' building blocks: rule matching, the PreToolUse gate, the deferral read from a
result, and the denial written into a transcript (a real one of the bundled CLI, trimmed of its
prompt snapshots and request blobs: tests/unit/data/deferred_transcript.jsonl)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ResultMessage
from claude_agent_sdk.types import DeferredToolUse

from claude_jobs.worker.approvals import (
    DEFERRED_ATTACHMENT,
    MAX_INPUT_DISPLAY_BYTES,
    ApprovalGate,
    deferred_from_result,
    deny_entries,
    deny_in_transcript,
    display_input,
    matching_rule,
    read_transcript,
    rule_matches,
)

TRANSCRIPT = Path(__file__).parent / "data" / "deferred_transcript.jsonl"
CALL = "toolu_marker"


@pytest.mark.parametrize(
    ("rule", "tool", "tool_input", "expected"),
    [
        ("Bash", "Bash", {"command": "rm -rf /"}, True),
        ("Bash(git push:*)", "Bash", {"command": "git push origin main"}, True),
        ("Bash(git push:*)", "Bash", {"command": "git push"}, True),
        ("Bash(git push:*)", "Bash", {"command": "git pushy"}, False),
        ("Bash(git push:*)", "Bash", {"command": "git status"}, False),
        ("Bash(git push:*)", "Bash", {"command": "ls && git push -f"}, True),
        ("Bash(git push:*)", "Bash", {"command": "echo hi; git push"}, True),
        ("Bash(npm test)", "Bash", {"command": "npm test"}, True),
        ("Bash(npm test)", "Bash", {"command": "npm test --all"}, False),
        ("Bash(curl *)", "Bash", {"command": "curl http://x"}, True),
        ("Write", "Write", {"file_path": "/w/a.txt", "content": "x"}, True),
        ("Write", "Edit", {"file_path": "/w/a.txt"}, False),
        ("Write(src/**)", "Write", {"file_path": "src/a/b.py"}, True),
        ("Write(*.env)", "Write", {"file_path": "/w/prod.env"}, True),
        ("Write(src/**)", "Write", {"file_path": "docs/a.md"}, False),
        ("WebFetch(domain:example.com)", "WebFetch", {"url": "https://example.com/a"}, True),
        ("WebFetch(domain:example.com)", "WebFetch", {"url": "https://evil.test/"}, False),
        ("mcp__kb__lookup", "mcp__kb__lookup", {"q": "x"}, True),
        ("mcp__kb__lookup", "mcp__kb__other", {}, False),
    ],
)
def test_a_rule_matches_the_calls_it_names(
    rule: str, tool: str, tool_input: dict[str, Any], expected: bool
) -> None:
    assert rule_matches(rule, tool, tool_input) is expected


def test_the_first_matching_rule_is_named() -> None:
    rules = ["Write", "Bash(git push:*)", "Bash"]
    assert matching_rule(rules, "Bash", {"command": "git push"}) == "Bash(git push:*)"
    assert matching_rule(rules, "Bash", {"command": "ls"}) == "Bash"
    assert matching_rule(rules, "Read", {"file_path": "a"}) is None


def test_a_calls_input_is_shown_cut_to_2_kib() -> None:
    assert display_input({"command": "ls"}) == '{"command":"ls"}'
    long = display_input({"content": "é" * 5000})
    assert len(long.encode("utf-8")) <= MAX_INPUT_DISPLAY_BYTES
    assert long.endswith("…")


def _hook(gate: ApprovalGate, tool: str, tool_input: dict[str, Any], call: str) -> Any:
    data = {"hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input}
    return asyncio.run(gate.pre_tool_use(data, call, None))


def test_the_gate_defers_a_matching_call_and_records_it() -> None:
    gate = ApprovalGate(["Bash(git push:*)"])
    answer = _hook(gate, "Bash", {"command": "git push"}, "toolu_1")
    assert answer["hookSpecificOutput"]["permissionDecision"] == "defer"
    assert answer["hookSpecificOutput"]["hookEventName"] == "PreToolUse"
    assert gate.deferred is not None
    assert (gate.deferred.tool_use_id, gate.deferred.tool, gate.deferred.rule) == (
        "toolu_1",
        "Bash",
        "Bash(git push:*)",
    )
    assert json.loads(gate.deferred.input) == {"command": "git push"}


def test_the_gate_says_nothing_about_other_calls_or_an_approved_one() -> None:
    gate = ApprovalGate(["Bash(git push:*)"], approved=["toolu_ok"])
    assert _hook(gate, "Bash", {"command": "ls"}, "toolu_1") == {}
    assert _hook(gate, "Bash", {"command": "git push"}, "toolu_ok") == {}
    assert gate.deferred is None


def _result(stop_reason: str | None, deferred: DeferredToolUse | None) -> ResultMessage:
    return ResultMessage(
        subtype="success",
        duration_ms=1,
        duration_api_ms=1,
        is_error=False,
        num_turns=1,
        session_id="s",
        stop_reason=stop_reason,
        deferred_tool_use=deferred,
    )


def test_a_deferral_is_read_from_the_result_with_the_gates_rule() -> None:
    gate = ApprovalGate(["Bash"])
    _hook(gate, "Bash", {"command": "ls"}, "toolu_1")
    used = DeferredToolUse(id="toolu_1", name="Bash", input={"command": "ls"})
    deferred = deferred_from_result(_result("tool_deferred", used), gate)
    assert deferred is not None
    assert (deferred.tool_use_id, deferred.tool, deferred.rule) == ("toolu_1", "Bash", "Bash")
    assert deferred_from_result(_result("end_turn", None), gate) is None
    other = DeferredToolUse(id="toolu_2", name="Bash", input={})
    assert deferred_from_result(_result("tool_deferred", other), gate).rule is None  # type: ignore[union-attr]


def test_a_denial_drops_the_deferral_and_appends_the_error_result() -> None:
    entries = read_transcript(TRANSCRIPT)
    (call,) = [e for e in entries if e.get("type") == "assistant"]
    now = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    denied = deny_entries(entries, CALL, "Denied: not today.", now=now, new_uuid="u-new")
    kinds = [(e.get("attachment") or {}).get("type") for e in denied]
    assert DEFERRED_ATTACHMENT not in kinds
    assert denied[:-1] == [
        e for e in entries if (e.get("attachment") or {}).get("type") != DEFERRED_ATTACHMENT
    ]
    last = denied[-1]
    assert last["type"] == "user"
    assert last["parentUuid"] == call["uuid"]
    assert last["uuid"] == "u-new"
    assert last["timestamp"] == "2026-12-05T09:00:00.000Z"
    for key in ("sessionId", "cwd", "version"):
        assert last[key] == call[key]
    assert last["message"] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": CALL,
                "content": "Denied: not today.",
                "is_error": True,
            }
        ],
    }
    assert entries == read_transcript(TRANSCRIPT)  # the input is left as it was


def test_a_denial_needs_the_calls_deferral() -> None:
    entries = read_transcript(TRANSCRIPT)
    with pytest.raises(ValueError, match="no deferred call"):
        deny_entries(entries, "toolu_other", "no")
    denied = deny_entries(entries, CALL, "no")
    with pytest.raises(ValueError, match="no deferred call"):
        deny_entries(denied, CALL, "no")  # a second denial finds nothing to deny


def test_a_transcript_file_is_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(TRANSCRIPT.read_bytes())
    path.chmod(0o600)
    entries = deny_in_transcript(path, CALL, "no")
    assert read_transcript(path) == entries
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["s.jsonl"]

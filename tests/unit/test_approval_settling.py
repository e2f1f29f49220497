"""Decisions carried out on a resumed session's transcript (approvals.settle_entries, on a
trimmed real transcript of the bundled CLI), the gate's answers for denied calls and questions,
and what a decision becomes for the run (waiting.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claude_jobs.approval_models import ApprovalDecision
from claude_jobs.models import JobOptions
from claude_jobs.worker.approvals import (
    DEFERRED_ATTACHMENT,
    UNDECIDED_DENIAL,
    ApprovalGate,
    answered_calls,
    read_transcript,
    settle_entries,
)
from claude_jobs.worker.waiting import DEFAULT_DENIAL, decision_result, gate_of
from tests.support.jobs import make_job

TRANSCRIPT = Path(__file__).parent / "data" / "deferred_transcript.jsonl"
CALL = "toolu_marker"


def deferrals(entries: list[dict[str, Any]]) -> list[str]:
    return [
        e["attachment"]["toolUseID"]
        for e in entries
        if e.get("type") == "attachment" and e["attachment"].get("type") == DEFERRED_ATTACHMENT
    ]


def test_a_denial_replaces_the_deferral_with_the_error_result() -> None:
    entries = read_transcript(TRANSCRIPT)
    settled = settle_entries(entries, {CALL: ("no markers", True)}, own=True)
    assert deferrals(settled.entries) == []
    (added,) = settled.added
    assert added["message"]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": CALL,
        "content": "no markers",
        "is_error": True,
    }
    assert settled.entries[-1] is added and settled.changed and settled.waiting == []


def test_carrying_a_decision_out_again_changes_nothing_more() -> None:
    # A redelivery, or a later segment: the store has the old deferral and the result.
    entries = read_transcript(TRANSCRIPT)
    once = settle_entries(entries, {CALL: ("no markers", True)}, own=True)
    stored = [*entries, *once.added]  # the store is append-only: the deferral stays in it
    again = settle_entries(stored, {CALL: ("no markers", True)}, own=True)
    assert again.added == [] and deferrals(again.entries) == []
    assert answered_calls(again.entries) == {CALL}


def test_an_allowed_call_keeps_its_deferral_until_it_ran() -> None:
    entries = read_transcript(TRANSCRIPT)
    allowed = settle_entries(entries, {CALL: None}, own=True)
    assert deferrals(allowed.entries) == [CALL] and allowed.runs == [CALL]
    assert allowed.added == [] and not allowed.changed
    # Once its result is in the transcript, a later resume does not run it again
    ran = [*entries, {"type": "user", "message": {"content": [_result(CALL)]}, "uuid": "r"}]
    later = settle_entries(ran, {CALL: None}, own=True)
    assert deferrals(later.entries) == [] and later.runs == []


def test_an_undecided_deferral_waits_for_its_job_and_is_denied_for_another() -> None:
    entries = read_transcript(TRANSCRIPT)
    own = settle_entries(entries, {}, own=True)
    assert [w[0] for w in own.waiting] == [CALL] and deferrals(own.entries) == [CALL]
    other = settle_entries(entries, {}, own=False)
    assert other.waiting == [] and deferrals(other.entries) == []
    (added,) = other.added
    assert added["message"]["content"][0]["content"] == UNDECIDED_DENIAL


def test_the_gate_denies_a_denied_call_and_defers_a_question() -> None:
    gate = ApprovalGate(["Bash(touch:*)"], denied={"toolu_1": "no"}, ask_questions=True)
    answer = _hook(gate, "Bash", {"command": "touch x"}, "toolu_1")
    assert answer["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert answer["hookSpecificOutput"]["permissionDecisionReason"] == "no"
    asked = _hook(gate, "AskUserQuestion", {"questions": []}, "toolu_q")
    assert asked["hookSpecificOutput"]["permissionDecision"] == "defer"
    assert gate.deferred is not None and gate.deferred.rule is None
    plain = ApprovalGate(["Bash(touch:*)"])
    assert _hook(plain, "AskUserQuestion", {"questions": []}, "toolu_q") == {}


def test_a_decision_becomes_the_runs_settings() -> None:
    options = JobOptions(allowed_tools=["Bash", "AskUserQuestion"], approvals=["Bash"])
    deny = _decision("deny")
    assert decision_result(deny) == (DEFAULT_DENIAL, True)
    assert decision_result(_decision("deny", message="not now")) == ("not now", True)
    assert decision_result(_decision("allow")) is None
    answered = decision_result(_decision("allow", answers={"Colour?": "Blue"}))
    assert answered is not None and '"Colour?"="Blue"' in answered[0] and answered[1] is False
    job = make_job("j-1", options=options, approval_decision=deny)
    assert gate_of(job) == {
        "approvals": ("Bash",),
        "ask_questions": True,
        "approved_calls": (),
        "denied_calls": ((CALL, DEFAULT_DENIAL),),
    }
    allowed = job.model_copy(update={"approval_decision": _decision("allow")})
    assert gate_of(allowed)["approved_calls"] == (CALL,)
    assert gate_of(allowed)["denied_calls"] == ()


def _decision(decision: str, **fields: Any) -> ApprovalDecision:
    return ApprovalDecision(
        approval_id="apr_1",
        tool_use_id=CALL,
        tool="Bash",
        decision=decision,
        decided_at=datetime.now(UTC),
        **fields,
    )


def _result(call: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call, "content": "ok", "is_error": False}


def _hook(gate: ApprovalGate, tool: str, tool_input: dict[str, Any], call: str) -> Any:
    data = {"hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input}
    return asyncio.run(gate.pre_tool_use(data, call, None))


def test_a_decided_job_is_never_warm_started() -> None:
    # Its claim counts a second run and its usage so far is recorded: a cold start resumes it.
    from claude_jobs.models import Usage
    from claude_jobs.worker.warm import WarmProfile

    decided = make_job(
        "j-1",
        options=JobOptions(allowed_tools=["Bash"], approvals=["Bash"]),
        session_id="s-1",
        segments=2,
        usage=Usage(output_tokens=3, num_turns=1),
        approval_decision=_decision("deny"),
    )
    assert WarmProfile.of(decided) is None

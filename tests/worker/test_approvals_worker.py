"""Approvals through the worker function with the real CLI (the root layout: a leased uid per
job): a call matching a rule makes the job `awaiting_approval` (nothing held); a decision
queues it again and the next delivery carries it out — allow runs the call once, deny never
runs it (not after a redelivery, a warm start or a segment boundary) and the model sees the
message; an `AskUserQuestion` is answered; the 51st wait fails the job."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from claude_jobs.approval_models import (
    APPROVAL_LIMIT,
    ASK_USER_QUESTION,
    MAX_APPROVAL_WAITS,
    ApprovalDecision,
)
from claude_jobs.models import Job, JobStatus
from claude_jobs.ports import Transition
from claude_jobs.settings import DEFAULT_PERMITTED_TOOLS
from claude_jobs.worker.segments import CONTINUE_PROMPT
from claude_jobs.worker.waiting import DENIED_PROMPT
from claude_jobs_tools.local.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    ToolUse,
)
from tests.worker.conftest import LambdaContext, WorkerStack, _worker_stack, sandboxes_of
from tests.worker.test_segments_cli import (
    INVOCATION_SECONDS,
    _event,
    short_invocations,
    steps_done,
)

pytestmark = pytest.mark.cli

RULE = "Bash(touch:*)"
DENIAL = "Denied by alice: no markers today."


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every agent uid may write (outside the per-run sandboxes)."""
    path = Path(tempfile.mkdtemp(prefix="approvals-"))
    os.chmod(path, 0o777)  # noqa: S103
    yield path
    shutil.rmtree(path, ignore_errors=True)


def results_for(request: RecordedRequest, tool_use_id: str) -> list[dict[str, Any]]:
    """The `tool_result` blocks for the call anywhere in the request's conversation."""
    return [
        block
        for message in (request.body or {}).get("messages") or []
        if message.get("role") == "user" and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict)
        and block.get("type") == "tool_result"
        and block.get("tool_use_id") == tool_use_id
    ]


def result_text(result: dict[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


def marker_model(marker: Path, call_id: str = "toolu_marker") -> Any:
    """A model that asks once to touch `marker`, then answers with what the call's result
    said (or "done")."""

    def model(request: RecordedRequest) -> Reply:
        found = results_for(request, call_id)
        if not found:
            return ToolUse("Bash", {"command": f"touch {marker}"}, id=call_id)
        return Text(f"after the call: {result_text(found[-1])[:200]}")

    return model


def submit(stack: WorkerStack, **options: Any) -> Job:
    return stack.submit(
        "Make the marker.",
        allowed_tools=["Bash"],
        approvals=[RULE],
        approval_timeout_seconds=600,
        **options,
    )


def decide(
    stack: WorkerStack,
    job: Job,
    decision: str,
    message: str | None = None,
    answers: dict[str, str] | None = None,
) -> Job:
    """What the API does on a decision: `awaiting_approval → queued` with the decision."""
    waiting = stack.get(job)
    pending = waiting.pending_approval
    assert waiting.status is JobStatus.AWAITING_APPROVAL and pending is not None
    chosen = ApprovalDecision(
        approval_id=pending.approval_id,
        tool_use_id=pending.tool_use_id,
        tool=pending.tool,
        decision=decision,
        message=message,
        answers=answers,
        decided_at=datetime.now(UTC),
    )
    return stack.repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.QUEUED,
            from_=[JobStatus.AWAITING_APPROVAL],
            set_fields={"approval_decision": chosen, "continuing": True},
            remove_fields=["pending_approval"],
        )
    )


def events_of(stack: WorkerStack, job: Job) -> list[dict[str, Any]]:
    page = stack.container.job_service.events(stack.tenant, job.job_id)
    return [e.model_dump(mode="json") for e in page.items]


def defer(stack: WorkerStack, job: Job) -> Job:
    assert stack.deliver(job) == {"batchItemFailures": []}
    waiting = stack.get(job)
    assert waiting.status is JobStatus.AWAITING_APPROVAL, waiting.error
    return waiting


def test_a_matching_call_makes_the_job_wait_holding_nothing(
    stack: WorkerStack, shared_dir: Path
) -> None:
    # Given a job whose rule matches the call its model makes
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    # When its message is delivered
    waiting = defer(stack, job)
    # Then the call did not run, and the job waits with its pending approval
    assert not marker.exists()
    pending = waiting.pending_approval
    assert pending is not None
    assert pending.tool_use_id == "toolu_marker" and pending.tool == "Bash"
    assert pending.rule == RULE and f"touch {marker}" in pending.input
    assert pending.approval_id.startswith("apr_")
    assert (pending.expires_at - pending.requested_at).total_seconds() == 600
    assert waiting.approval_waits == 1 and waiting.continuing is True
    assert waiting.lease_until is None and waiting.approval_decision is None
    assert waiting.usage is not None and waiting.usage.output_tokens > 0
    # And no sandbox is left
    assert sandboxes_of(job) == []
    # And the events say what waits, then the status
    events = events_of(stack, job)
    (requested,) = [e for e in events if e["type"] == "approval_requested"]
    assert requested["approval_id"] == pending.approval_id
    assert requested["tool"] == "Bash" and requested["rule"] == RULE
    assert f"touch {marker}" in requested["input"]
    assert events[-1]["type"] == "status" and events[-1]["status"] == "awaiting_approval"
    # And a redelivered message does not run it
    assert stack.deliver(job, message_id="again") == {"batchItemFailures": []}
    assert stack.get(job).status is JobStatus.AWAITING_APPROVAL
    assert len(stack.fake.message_requests) == 1


def test_allow_runs_the_call_once_and_the_usage_adds_up(
    stack: WorkerStack, shared_dir: Path
) -> None:
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    waiting = defer(stack, job)
    assert waiting.usage is not None
    before = waiting.usage
    # When a person allows it and the job's message comes again
    decide(stack, job, "allow")
    assert stack.deliver(job) == {"batchItemFailures": []}
    # Then the call ran (once) and the job succeeded, its usage summed over both runs
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert marker.exists()
    last = stack.fake.message_requests[-1]
    (result,) = results_for(last, "toolu_marker")
    assert not result.get("is_error")
    assert done.usage is not None
    assert done.usage.output_tokens > before.output_tokens
    assert done.usage.num_turns > before.num_turns
    assert done.attempts == 1 and done.segments == 2


def test_deny_never_runs_the_call_and_the_model_sees_the_message(
    stack: WorkerStack, shared_dir: Path
) -> None:
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    defer(stack, job)
    decide(stack, job, "deny", DENIAL)
    assert stack.deliver(job) == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert not marker.exists()
    # The model's next request carried the denial as the call's error result, once
    after = stack.fake.message_requests[1]
    (result,) = results_for(after, "toolu_marker")
    assert result["is_error"] and result_text(result) == DENIAL
    # and was told to go on without it (not the segments' "do an interrupted call again")
    conversation = json.dumps((after.body or {}).get("messages"), ensure_ascii=False)
    assert DENIED_PROMPT in conversation
    assert CONTINUE_PROMPT not in conversation
    assert done.result is not None and DENIAL in (done.result.text or "")


def test_a_denial_without_a_message_says_a_person_denied_it(
    stack: WorkerStack, shared_dir: Path
) -> None:
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    defer(stack, job)
    decide(stack, job, "deny")
    stack.deliver(job)
    assert stack.get(job).status is JobStatus.SUCCEEDED
    assert not marker.exists()
    (result,) = results_for(stack.fake.message_requests[-1], "toolu_marker")
    assert result["is_error"] and "denied by a person" in result_text(result)


def test_a_denial_is_not_run_by_a_redelivery_after_a_crash(
    stack: WorkerStack, shared_dir: Path
) -> None:
    # Given a denied job whose run went through (the denial stored with its session)
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    defer(stack, job)
    decide(stack, job, "deny", DENIAL)
    stack.deliver(job)
    ran = stack.get(job)
    assert ran.status is JobStatus.SUCCEEDED
    # When the worker is taken to have died before its terminal write (the job running under
    # an expired lease, its session as that run left it) and the message comes again
    stack.repo.update(
        job.job_id,
        set_fields={"status": JobStatus.RUNNING, "lease_until": 1, "result": None},
        expected_status=[JobStatus.SUCCEEDED],
    )
    calls = len(stack.fake.message_requests)
    assert stack.deliver(job, message_id="redelivered") == {"batchItemFailures": []}
    # Then the re-run resumed without running the call, and the model saw the denial once
    again = stack.get(job)
    assert again.status is JobStatus.SUCCEEDED, again.error
    assert not marker.exists()
    later = stack.fake.message_requests[calls:]
    assert later, "the redelivery resumed the session"
    for request in later:
        (result,) = results_for(request, "toolu_marker")
        assert result["is_error"] and result_text(result) == DENIAL


def test_the_51st_wait_fails_the_job(stack: WorkerStack, shared_dir: Path) -> None:
    # Given a job whose calls have waited the most a job may already
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    stack.repo.update(
        job.job_id,
        set_fields={"approval_waits": MAX_APPROVAL_WAITS},
        expected_status=[JobStatus.QUEUED],
    )
    # When its model makes a matching call
    assert stack.deliver(job) == {"batchItemFailures": []}
    # Then the job fails with approval_limit and the call never ran
    failed = stack.get(job)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == APPROVAL_LIMIT
    assert failed.pending_approval is None and failed.approval_waits == MAX_APPROVAL_WAITS
    assert not marker.exists()


def test_a_second_matching_call_waits_again(stack: WorkerStack, shared_dir: Path) -> None:
    # Given a model that makes two matching calls in a row
    first, second = shared_dir / "first", shared_dir / "second"

    def model(request: RecordedRequest) -> Reply:
        if not results_for(request, "toolu_1"):
            return ToolUse("Bash", {"command": f"touch {first}"}, id="toolu_1")
        if not results_for(request, "toolu_2"):
            return ToolUse("Bash", {"command": f"touch {second}"}, id="toolu_2")
        return Text("both asked")

    stack.fake.default = model
    job = submit(stack)
    defer(stack, job)
    decide(stack, job, "allow")
    # When the first is allowed, the second waits (the first decision gone with it)
    waiting = defer(stack, job)
    assert first.exists() and not second.exists()
    assert waiting.pending_approval is not None
    assert waiting.pending_approval.tool_use_id == "toolu_2"
    assert waiting.approval_waits == 2 and waiting.approval_decision is None
    # And denying the second ends the job with only the first run
    decide(stack, job, "deny", DENIAL)
    stack.deliver(job)
    assert stack.get(job).status is JobStatus.SUCCEEDED
    assert first.exists() and not second.exists()


@pytest.fixture
def ask_stack(
    aws: None, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerStack]:
    """`stack`, in a deployment that permits `AskUserQuestion`."""
    tools = (*DEFAULT_PERMITTED_TOOLS, ASK_USER_QUESTION)
    yield from _worker_stack("wq", fake, monkeypatch, permitted_tools=tools)


def test_an_ask_user_question_is_answered(ask_stack: WorkerStack) -> None:
    stack = ask_stack
    question = "Which colour should the button be?"
    asked = {
        "questions": [
            {
                "question": question,
                "header": "Colour",
                "multiSelect": False,
                "options": [
                    {"label": "Red", "description": "a red button"},
                    {"label": "Blue", "description": "a blue button"},
                ],
            }
        ]
    }

    def model(request: RecordedRequest) -> Reply:
        found = results_for(request, "toolu_ask")
        if not found:
            return ToolUse("AskUserQuestion", asked, id="toolu_ask")
        return Text(f"answer seen: {result_text(found[-1])[:300]}")

    stack.fake.default = model
    job = stack.submit("Ask which colour.", allowed_tools=["AskUserQuestion"])
    waiting = defer(stack, job)
    pending = waiting.pending_approval
    assert pending is not None and pending.tool == "AskUserQuestion" and pending.rule is None
    assert question in json.loads(pending.input)["questions"][0]["question"]
    decide(stack, job, "allow", answers={question: "Blue"})
    assert stack.deliver(job) == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    (result,) = results_for(stack.fake.message_requests[-1], "toolu_ask")
    assert not result.get("is_error")
    assert question in result_text(result) and "Blue" in result_text(result)


def test_a_denial_is_not_run_by_a_warm_start(warm_stack: WorkerStack, shared_dir: Path) -> None:
    stack = warm_stack
    marker = shared_dir / "marker"
    # Given a worker that has run a job and started the CLI for the next one
    stack.fake.script(Text("warming"))
    first = stack.submit("Say hi.", allowed_tools=["Bash"])
    assert stack.deliver(first, message_id="first") == {"batchItemFailures": []}
    assert stack.function.processor.warm_pool.current is not None
    # And a job (with the same options) whose call waits, then is denied
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    defer(stack, job)
    assert stack.function.processor.warm_pool.current is not None  # started for the next
    decide(stack, job, "deny", DENIAL)
    # When its message comes again (twice: a redelivery too)
    assert stack.deliver(job, message_id="decided") == {"batchItemFailures": []}
    assert stack.deliver(job, message_id="redelivered") == {"batchItemFailures": []}
    # Then the call never ran, and the model saw the denial
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert not marker.exists()
    (result,) = results_for(stack.fake.message_requests[-1], "toolu_marker")
    assert result["is_error"] and result_text(result) == DENIAL


def test_a_denial_is_not_run_across_segments(stack: WorkerStack, shared_dir: Path) -> None:
    # Given a job whose model asks for the marker, then does steps of ~2 s each
    marker, effects = shared_dir / "marker", shared_dir / "effects"
    effects.touch()
    os.chmod(effects, 0o666)  # noqa: S103  # each run's agent may be another uid
    steps = 8

    def model(request: RecordedRequest) -> Reply:
        if not results_for(request, "toolu_marker"):
            return ToolUse("Bash", {"command": f"touch {marker}"}, id="toolu_marker")
        step = max(steps_done(request), default=0) + 1
        if step > steps:
            return Text(f"all {steps} steps done")
        return ToolUse(
            "Bash", {"command": f"sleep 2; echo {step} >> {effects}; echo STEP-OK-{step}"}
        )

    stack.fake.default = model
    job = submit(stack, timeout_seconds=300)
    worker = short_invocations(stack)
    try:
        # When it runs in invocations of 15 s, denied when it waits
        runs = 0
        while stack.get(job).status is JobStatus.QUEUED and runs < 8:
            answer = worker.handler(_event(stack, job), LambdaContext(INVOCATION_SECONDS * 1000))
            runs += 1
            assert answer == {"batchItemFailures": []}
            if stack.get(job).status is JobStatus.AWAITING_APPROVAL:
                decide(stack, job, "deny", DENIAL)
    finally:
        worker.processor.ports.proxy.close()
    # Then it went on over more than one segment after the denial and never ran the call
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.segments >= 3, "the denied job resumed, then spanned another segment"
    assert not marker.exists()
    assert effects.read_text().split() == [str(n) for n in range(1, steps + 1)]
    for request in stack.fake.message_requests[1:]:
        (result,) = results_for(request, "toolu_marker")
        assert result["is_error"] and result_text(result) == DENIAL


def test_a_wait_that_was_not_recorded_is_recorded_by_the_retry_without_a_run(
    stack: WorkerStack, shared_dir: Path
) -> None:
    # Given a job whose call was deferred, but whose worker died before recording the wait
    # (the job running under an expired lease, its session saved with the deferral)
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    first = defer(stack, job).pending_approval
    assert first is not None
    stack.repo.update(
        job.job_id,
        set_fields={
            "status": JobStatus.RUNNING,
            "lease_until": 1,
            "pending_approval": None,
            "approval_waits": 0,
            "usage": None,
        },
        expected_status=[JobStatus.AWAITING_APPROVAL],
    )
    calls = len(stack.fake.message_requests)
    # When the message comes again
    assert stack.deliver(job, message_id="retry") == {"batchItemFailures": []}
    # Then the job waits for the same call, the model not called and the call not run
    waiting = stack.get(job)
    assert waiting.status is JobStatus.AWAITING_APPROVAL
    assert waiting.pending_approval is not None
    assert waiting.pending_approval.tool_use_id == first.tool_use_id
    assert waiting.pending_approval.rule == RULE
    assert len(stack.fake.message_requests) == calls
    assert not marker.exists()


def test_a_call_nobody_decided_on_never_runs_when_another_job_continues_the_session(
    stack: WorkerStack, shared_dir: Path
) -> None:
    # Given a job whose call waited and that ended without a decision (as expiry ends it)
    marker = shared_dir / "marker"
    stack.fake.default = marker_model(marker)
    job = submit(stack)
    defer(stack, job)
    stack.repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.FAILED,
            from_=[JobStatus.AWAITING_APPROVAL],
            set_fields={"error": {"code": "approval_expired", "message": "expired"}},
        )
    )
    # When a new job continues its session
    calls = len(stack.fake.message_requests)
    follow = stack.submit("Go on.", allowed_tools=["Bash"], session_id=job.session_id)
    assert stack.deliver(follow, message_id="follow") == {"batchItemFailures": []}
    # Then the old call did not run: the model saw it refused, and the new job went on
    done = stack.get(follow)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert not marker.exists()
    later = stack.fake.message_requests[calls:]
    assert later
    for request in later:
        (result,) = results_for(request, "toolu_marker")
        assert result["is_error"] and "not approved" in result_text(result)

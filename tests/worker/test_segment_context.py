"""Long jobs keep every finished step across segments (issue 21), with the real CLI.

The scripted model decides as a real one does: from the conversation it receives. It counts
the finished steps it can see (tool results `STEP-OK-<n>`) and asks for the next one, so a
segment that resumed without an earlier step's result makes it do that step again, which the
steps' own files show (each step appends its number to `runs` when it starts and to `effects`
when it ends). Its tool_use ids are the fake's, unique per call, as a real model's are.

And where a segment's boundary falls — during a model call, during a tool call, right after a
tool result — what the next segment's model receives."""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import claude_agent_sdk._internal.sessions  # noqa: F401  # imported before the first invocation,
import pytest  # as Lambda's init phase would: an import under load is no part of a segment

from claude_jobs.models import Job, JobStatus
from claude_jobs.wiring import Container
from claude_jobs.worker.function import WorkerFunction
from claude_jobs.worker.segments import CONTINUE_PROMPT
from claude_jobs_tools.local.fake_anthropic import RecordedRequest, Reply, Text, ToolUse
from tests.worker.conftest import LambdaContext, WorkerStack, sandboxes_of
from tests.worker.test_segments_cli import _event

pytestmark = [pytest.mark.cli, pytest.mark.timeout(600)]

_DONE = re.compile(r"STEP-OK-(\d+)")


def finished_steps(request: RecordedRequest) -> set[int]:
    """The steps whose successful results the model can see in this request."""
    done: set[int] = set()
    for message in (request.body or {}).get("messages") or []:
        if message.get("role") != "user" or not isinstance(message.get("content"), list):
            continue
        for block in message["content"]:
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_result"
                and not block.get("is_error")
            ):
                done.update(int(n) for n in _DONE.findall(json.dumps(block.get("content"))))
    return done


def tool_calls(request: RecordedRequest) -> list[str]:
    """The ids of the tool calls in the conversation, in order."""
    return [
        block["id"]
        for message in request.body["messages"]
        if message["role"] == "assistant" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_use"
    ]


def tool_results(request: RecordedRequest) -> dict[str, str]:
    """Each tool result in the conversation, by call id (text, "ERROR: " first if an error)."""
    found = {}
    for message in request.body["messages"]:
        if message["role"] == "user" and isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    text = json.dumps(block.get("content"))
                    found[block["tool_use_id"]] = (
                        "ERROR: " if block.get("is_error") else ""
                    ) + text
    return found


def step_command(shared: Path, step: int, seconds: float) -> str:
    ticks = max(round(seconds / 0.2), 1)  # the CLI refuses one long sleep: short ones
    return (
        f"echo {step} >> {shared}/runs; for i in $(seq {ticks}); do sleep 0.2; done; "
        f"echo {step} >> {shared}/effects; echo STEP-OK-{step}"
    )


def counting_model(shared: Path, steps: int, seconds: float) -> Callable[[RecordedRequest], Reply]:
    for name in ("runs", "effects"):  # each segment's agent runs as another uid
        (shared / name).touch()
        os.chmod(shared / name, 0o666)  # noqa: S103

    def model(request: RecordedRequest) -> Reply:
        seen = len(finished_steps(request))
        if seen >= steps:
            return Text(f"all {steps} steps done")
        return ToolUse("Bash", {"command": step_command(shared, seen + 1, seconds)})

    return model


def worker_of(stack: WorkerStack, invocation_seconds: int) -> WorkerFunction:
    settings = stack.provisioned.settings.model_copy(
        update={"worker_invocation_seconds": invocation_seconds}
    )
    return WorkerFunction(Container(settings), min_run_seconds=1)


def run_segments(
    stack: WorkerStack,
    job: Job,
    invocation_seconds: int,
    most: int,
    starts: list[float] | None = None,
    marks: list[int] | None = None,
) -> int:
    """Deliver the job's message invocation after invocation (each `invocation_seconds` long)
    until it is no longer queued; returns the number of invocations. `starts`: when each
    invocation began (monotonic); `marks`: how many model calls came before each."""
    starts = [] if starts is None else starts
    marks = [] if marks is None else marks
    import boto3

    worker = worker_of(stack, invocation_seconds)
    queue_url = stack.provisioned.settings.jobs_queue_url
    sqs = boto3.client("sqs")
    invocations = 0
    try:
        while stack.get(job).status is JobStatus.QUEUED and invocations < most:
            starts.append(time.monotonic())
            marks.append(len(stack.fake.message_requests))
            answer = worker.handler(_event(stack, job), LambdaContext(invocation_seconds * 1000))
            invocations += 1
            assert answer == {"batchItemFailures": []}
            for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get(
                "Messages", []
            ):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    finally:
        worker.processor.ports.proxy.close()
    return invocations


def lines(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize(
    ("steps", "seconds", "invocation", "at_least", "at_most"),
    [
        # 15 s invocations (a turn-boundary window of ~12 s): two ~4.5 s steps a segment
        (5, 4.2, 15, 3, 4),
        # 12 s invocations (~9.6 s): one ~5.5 s step a segment (a second would run into the
        # hard stop; with ~4.2 s steps two fit on a quiet machine, one under load)
        (10, 5.5, 12, 6, 12),
    ],
    ids=["5-steps", "10-steps"],
)
def test_every_finished_step_is_in_the_conversation_the_next_segment_resumes(
    stack: WorkerStack,
    shared_dir: Path,
    steps: int,
    seconds: float,
    invocation: int,
    at_least: int,
    at_most: int,
) -> None:
    # Given a model that asks for the next step until it sees every step finished
    stack.fake.default = counting_model(shared_dir, steps, seconds)
    # (each segment boundary costs a turn: the call it refused is asked for again)
    job = stack.submit(
        "Do the steps.", allowed_tools=["Bash"], timeout_seconds=600, max_turns=3 * steps
    )
    # When the worker runs it in invocations much shorter than the work
    invocations = run_segments(stack, job, invocation, most=steps + 4)
    # Then it succeeded, each step run exactly once (started once, finished once, in order)
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, (done.error, lines(shared_dir / "runs"))
    assert done.result is not None and done.result.text == f"all {steps} steps done"
    assert lines(shared_dir / "runs") == list(range(1, steps + 1))
    assert lines(shared_dir / "effects") == list(range(1, steps + 1))
    # Over several segments, but not many more than the work needs: as many steps as fit in
    # a segment's window run there, and the answer may take one more segment
    assert at_least <= done.segments == invocations <= at_most
    assert done.attempts == 1
    # And the conversation only grew: each request holds the tool calls of the one before it,
    # in the same order, and each call's result
    requests = stack.fake.message_requests
    for earlier, later in itertools.pairwise(requests):
        assert finished_steps(earlier) <= finished_steps(later)
        calls = tool_calls(later)
        assert calls[: len(tool_calls(earlier))] == tool_calls(earlier)
        assert set(calls) == set(tool_results(later))
    assert finished_steps(requests[-1]) == set(range(1, steps + 1))
    assert sandboxes_of(job) == []


# ---------------------------------------------------------------- where the boundary falls

#: 20 s invocations: the turn-boundary stop from ~16 s, the hard stop at ~18 s.
BOUNDARY_INVOCATION = 20
_YIELD_AT, _HARD_AT = 16.0, 18.0


def until(moment: float) -> float:
    return max(moment - time.monotonic(), 0.0)


def last_user_text(request: RecordedRequest) -> str:
    return json.dumps(request.body["messages"][-1]["content"])


def test_a_boundary_during_a_model_call_resumes_after_the_last_tool_result(
    stack: WorkerStack,
    shared_dir: Path,
) -> None:
    # Given a model whose answer after the first step is slow, the first time: still not
    # there when the invocation's hard stop comes
    steps = counting_model(shared_dir, 1, 0.4)
    starts: list[float] = []

    def model(request: RecordedRequest) -> Reply:
        reply = steps(request)
        if isinstance(reply, Text) and len(starts) == 1:
            # (every such answer in the first invocation: the CLI may ask again meanwhile)
            return Text(reply.text, delay=until(starts[0] + _HARD_AT + 1.5))
        return reply

    stack.fake.default = model
    job = stack.submit("Do the step.", allowed_tools=["Bash"], timeout_seconds=300)
    marks: list[int] = []
    # When the worker runs it in 20 s invocations
    run_segments(stack, job, BOUNDARY_INVOCATION, most=4, starts=starts, marks=marks)
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.segments == 2
    # Then the next segment's model received the step's call and result, then the continue
    # prompt: the answer that never arrived left nothing behind
    resumed = stack.fake.message_requests[marks[1]]
    assert finished_steps(resumed) == {1}
    assert len(tool_calls(resumed)) == 1 and set(tool_results(resumed)) == set(tool_calls(resumed))
    assert CONTINUE_PROMPT in last_user_text(resumed)
    # And the step ran once
    assert lines(shared_dir / "runs") == [1] and lines(shared_dir / "effects") == [1]


def test_a_boundary_during_a_tool_call_is_recorded_as_interrupted(
    stack: WorkerStack,
    shared_dir: Path,
) -> None:
    # Given a model whose first step runs past the invocation's hard stop; told that it was
    # interrupted, it does the step again in a shorter way
    steps = counting_model(shared_dir, 1, 0.4)

    def model(request: RecordedRequest) -> Reply:
        if not tool_calls(request):
            return ToolUse("Bash", {"command": step_command(shared_dir, 1, 30.0)})
        return steps(request)

    stack.fake.default = model
    job = stack.submit("Do the step.", allowed_tools=["Bash"], timeout_seconds=300)
    marks: list[int] = []
    # When the worker runs it in 20 s invocations
    run_segments(stack, job, BOUNDARY_INVOCATION, most=4, marks=marks)
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.segments == 2
    # Then the next segment's model received the cut-off call with an error result saying it
    # was interrupted, then the continue prompt
    resumed = stack.fake.message_requests[marks[1]]
    (call,) = tool_calls(resumed)
    result = tool_results(resumed)[call]
    assert result.startswith("ERROR: ") and "interrupted" in result.lower(), result
    assert CONTINUE_PROMPT in last_user_text(resumed)
    # And the step started twice (the cut-off run and the new one) and finished once
    assert lines(shared_dir / "runs") == [1, 1] and lines(shared_dir / "effects") == [1]
    # And the cut-off call counted for as long as it had run (over 10 s), which would not fit
    # in a whole segment: the next segment judged its first call without it (it ran)
    assert done.segment_tool_ms is not None and done.segment_tool_ms > 10_000, done


def test_a_boundary_right_after_a_tool_result_pauses_the_next_call(
    stack: WorkerStack,
    shared_dir: Path,
) -> None:
    # Given a model that asks for its second step only once the turn-boundary stop has come
    # (between it and the hard stop)
    steps = counting_model(shared_dir, 2, 0.4)
    starts: list[float] = []

    def model(request: RecordedRequest) -> Reply:
        reply = steps(request)
        if finished_steps(request) == {1} and len(starts) == 1:
            return ToolUse("Bash", reply.input, delay=until(starts[0] + _YIELD_AT + 0.6))  # type: ignore[union-attr]
        return reply

    stack.fake.default = model
    job = stack.submit("Do the steps.", allowed_tools=["Bash"], timeout_seconds=300)
    marks: list[int] = []
    # When the worker runs it in 20 s invocations
    run_segments(stack, job, BOUNDARY_INVOCATION, most=4, starts=starts, marks=marks)
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.segments == 2
    # Then the second step never ran in the first segment: the next segment's model received
    # the first step's result, the second call with an error result saying it was paused,
    # then the continue prompt
    resumed = stack.fake.message_requests[marks[1]]
    first, second = tool_calls(resumed)
    assert "STEP-OK-1" in tool_results(resumed)[first]
    paused = tool_results(resumed)[second]
    assert paused.startswith("ERROR: ") and "paused" in paused, paused
    assert CONTINUE_PROMPT in last_user_text(resumed)
    # And each step ran once
    assert lines(shared_dir / "runs") == [1, 2] and lines(shared_dir / "effects") == [1, 2]
    # And the job counted a turn for each model call, the paused one included, and none for
    # the turn the pause stopped before asking the model (the CLI counts that one too)
    assert done.usage is not None
    assert done.usage.num_turns == len(stack.fake.message_requests) == 4, done.usage


def test_a_segments_first_call_is_judged_by_the_previous_segments_calls(
    stack: WorkerStack,
    shared_dir: Path,
) -> None:
    # Given steps of ~6 s, and a model that asks for its second step at the turn-boundary
    # stop of the first segment (paused), then late in the second: 12.5 s into a segment whose
    # hard stop comes at ~18 s, when a call like the first would run into it
    steps = counting_model(shared_dir, 2, 6.0)
    starts: list[float] = []

    def model(request: RecordedRequest) -> Reply:
        reply = steps(request)
        if finished_steps(request) == {1} and len(starts) in (1, 2):
            moment = _YIELD_AT + 0.6 if len(starts) == 1 else 12.5
            return ToolUse("Bash", reply.input, delay=until(starts[-1] + moment))  # type: ignore[union-attr]
        return reply

    stack.fake.default = model
    job = stack.submit("Do the steps.", allowed_tools=["Bash"], timeout_seconds=300)
    marks: list[int] = []
    # When the worker runs it in 20 s invocations
    run_segments(stack, job, BOUNDARY_INVOCATION, most=5, starts=starts, marks=marks)
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, (done.error, lines(shared_dir / "runs"))
    # Then the second segment did not start the call (it had timed none of its own, but the
    # first segment's ~6 s call said it would be cut off): it paused, and the third ran it
    assert done.segments == 3
    resumed = stack.fake.message_requests[marks[2]]
    first, refused, again = tool_calls(resumed)[:3]
    assert "STEP-OK-1" in tool_results(resumed)[first]
    assert "paused" in tool_results(resumed)[refused] and "paused" in tool_results(resumed)[again]
    # And each step started once and finished once
    assert lines(shared_dir / "runs") == [1, 2] and lines(shared_dir / "effects") == [1, 2]

"""Long jobs with the real CLI: a job longer than one (short) worker invocation runs in
segments — stopped at a turn boundary, its session saved, re-queued, resumed — and every tool
call's effect happens exactly once."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from claude_jobs.models import Job, JobStatus
from claude_jobs.resources import JOBS_QUEUE
from claude_jobs.wiring import Container
from claude_jobs.worker.function import WorkerFunction
from claude_jobs_tools.local.fake_anthropic import RecordedRequest, Reply, Text, ToolUse
from tests.worker.conftest import LambdaContext, WorkerStack, sandboxes_of, sqs_event

pytestmark = pytest.mark.cli

#: The shortest invocation the settings allow: its run yields after 8 s (a tenth of it kept
#: for recording, a tenth for the turn boundary), well short of the twelve one-second steps
#: however fast the machine (with 15 s the yield came at 12 s, and on a quiet machine all
#: twelve steps could start before it: one invocation, no segment).
INVOCATION_SECONDS = 10
STEPS = 12
_DONE = re.compile(r"STEP-OK-(\d+)")


def steps_done(request: RecordedRequest) -> set[int]:
    """The steps whose tool results the conversation holds (what the model knows is done)."""
    done: set[int] = set()
    for message in (request.body or {}).get("messages") or []:
        if message.get("role") == "user":
            done.update(int(n) for n in _DONE.findall(json.dumps(message.get("content"))))
    return done


def short_invocations(stack: WorkerStack) -> WorkerFunction:
    settings = stack.provisioned.settings.model_copy(
        update={"worker_invocation_seconds": INVOCATION_SECONDS}
    )
    return WorkerFunction(Container(settings), min_run_seconds=1)


def test_a_long_job_runs_in_segments_and_each_tool_runs_once(
    stack: WorkerStack, shared_dir: Path
) -> None:
    # Given a model that does 12 steps (each a Bash call of about a second appending its
    # number to a file), taking the next step from what the conversation shows done
    effects = shared_dir / "effects"
    effects.touch()
    os.chmod(effects, 0o666)  # noqa: S103  # each segment's agent may run as another uid

    def model(request: RecordedRequest) -> Reply:
        done = steps_done(request)
        step = max(done, default=0) + 1
        if step > STEPS:
            return Text(f"all {STEPS} steps done")
        command = f"sleep 1; echo {step} >> {effects}; echo STEP-OK-{step}"
        return ToolUse("Bash", {"command": command})

    stack.fake.default = model
    job = stack.submit("Do the twelve steps.", allowed_tools=["Bash"], timeout_seconds=300)
    worker = short_invocations(stack)
    try:
        # When the worker runs it in invocations of 15 s, each new message delivered in turn
        queue_url = stack.provisioned.settings.jobs_queue_url
        sqs = boto3.client("sqs")
        invocations = 0
        while stack.get(job).status is JobStatus.QUEUED and invocations < 8:
            answer = worker.handler(_event(stack, job), LambdaContext(INVOCATION_SECONDS * 1000))
            invocations += 1
            assert answer == {"batchItemFailures": []}
            later = stack.get(job)
            if later.status is JobStatus.QUEUED:  # a segment ended: its next message was sent
                received = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
                (message,) = received["Messages"]
                assert json.loads(message["Body"])["job_id"] == job.job_id
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    finally:
        worker.processor.ports.proxy.close()
    # Then it succeeded after more than one invocation, each step's effect exactly once
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result.text == f"all {STEPS} steps done"
    assert effects.read_text().split() == [str(n) for n in range(1, STEPS + 1)]
    assert invocations >= 2 and done.segments == invocations
    # Attempts count faults only; the usage adds up across segments
    assert done.attempts == 1
    assert done.usage is not None and done.usage.num_turns >= STEPS + 1
    # A turn is a model call: a boundary costs the call it paused, no more (a model call the
    # hard stop cut off is asked for but never answered, hence at most)
    assert done.usage.num_turns <= len(stack.fake.message_requests), done.usage
    assert done.continuing is False and done.lease_until is None
    # The last call carried the whole conversation: every step's result
    assert steps_done(stack.fake.message_requests[-1]) == set(range(1, STEPS + 1))
    assert sandboxes_of(job) == []


def _event(stack: WorkerStack, job: Job) -> dict[str, Any]:
    """The job's SQS event, from the provisioned jobs queue."""
    event = sqs_event(job)
    arn = stack.provisioned.queue_arns[JOBS_QUEUE.logical_id]
    event["Records"][0]["eventSourceARN"] = arn
    return event

"""Long jobs in the image layout (tests/worker/test_image.py): one warm worker process as the
runtime user, the code directory read-only, only the built artifact on the path, handling a
long job's segments one after another as Lambda invocations of a few seconds each. The model
counts the finished steps it can see (test_segment_context.py): a segment that resumed without
an earlier step's result would make it run that step again."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path

import pytest

from claude_jobs.models import Job, JobRequest, JobStatus
from claude_jobs.resources import JOBS_QUEUE
from claude_jobs.wiring import Container
from claude_jobs.worker.segments import CONTINUE_PROMPT
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, RecordedRequest, Reply, ToolUse
from tests.worker.conftest import REAL_KEY, sqs_event
from tests.worker.image_layout import (
    as_runtime_user,
    own_scratch,
    required_runtime_python,
    worker_env,
)
from tests.worker.test_segment_context import (
    counting_model,
    finished_steps,
    lines,
    tool_calls,
    until,
)

pytestmark = [pytest.mark.cli, pytest.mark.timeout(900)]

#: The handler as the Lambda runtime runs it, for each event (one JSON a line) in a row, each
#: invocation `WORKER_INVOCATION_SECONDS` long (its context counts down from there).
SEGMENT_HARNESS = """
import json, os, sys, time
sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
import handler
# The SDK imported before the first invocation, as Lambda's INIT phase would if the handler
# imported it: a cold import (seconds under load here) is not a segment's time to run in.
import claude_agent_sdk._internal.sessions

class Context:
    aws_request_id = "image-segments"
    function_name = "claude-jobs-worker"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:claude-jobs-worker"
    def __init__(self):
        self.end = time.monotonic() + float(os.environ["WORKER_INVOCATION_SECONDS"])
    def get_remaining_time_in_millis(self):
        return int(max(self.end - time.monotonic(), 0) * 1000)

for line in sys.stdin:
    answer = handler.lambda_handler(json.loads(line), Context())
    print("ANSWER", json.dumps(answer), flush=True)
"""


def _run_in_image(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    shared_dir: Path,
    fake: FakeAnthropic,
    name: str,
    max_turns: int,
    invocation: int,
    invocations: int,
) -> Job:
    """Submit a job to a fresh provisioned stack and hand its message to one warm worker
    process, as the runtime user, `invocations` times (each an invocation `invocation`
    seconds long; the worker re-queues the job at each segment's end); the job as it ended."""
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    provisioned = provision(name, secret_value=REAL_KEY, anthropic_base_url=fake.url)
    container = Container(provisioned.settings)
    job = container.job_service.submit(
        "tenant-long",
        JobRequest(
            prompt="Do the steps.",
            allowed_tools=["Bash"],
            timeout_seconds=600,
            max_turns=max_turns,
        ),
    ).job
    env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
    env["WORKER_INVOCATION_SECONDS"] = str(invocation)
    own_scratch(env, shared_dir)
    event = sqs_event(job)
    event["Records"][0]["eventSourceARN"] = provisioned.queue_arns[JOBS_QUEUE.logical_id]
    run = subprocess.run(
        [python, "-S", "-c", SEGMENT_HARNESS],
        input="".join(json.dumps(event) + "\n" for _ in range(invocations)),
        **as_runtime_user(),
        cwd=task_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    done = container.job_repository.get(job.job_id)
    assert done is not None
    return done


@pytest.mark.parametrize(
    ("steps", "seconds", "invocation", "at_least", "at_most"),
    # 15 s invocations (a window of ~12 s): two ~4.2 s steps a segment; 18 s (~14.4 s): one
    # ~7 s step (a second would run into the hard stop), started up to ~7 s into the segment
    # (a loaded machine's slow start), a segment that wasted its start by more pausing at once
    [(5, 4.2, 15, 3, 6), (10, 7.0, 18, 6, 13)],
    ids=["5-steps", "10-steps"],
)
def test_a_long_job_keeps_every_finished_step_in_the_image_layout(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    shared_dir: Path,
    steps: int,
    seconds: float,
    invocation: int,
    at_least: int,
    at_most: int,
) -> None:
    # Given a model that asks for the next step until it sees every step finished
    with FakeAnthropic(
        api_key=REAL_KEY, default=counting_model(shared_dir, steps, seconds)
    ) as fake:
        # When one warm worker process, as the runtime user, gets the job's message again
        # and again (each a short invocation) — the worker re-queues it at each segment's end
        done = _run_in_image(
            task_root,
            image_site,
            moto_server,
            shared_dir,
            fake,
            f"imgseg{steps}",
            max_turns=4 * steps,
            invocation=invocation,
            invocations=at_most + 3,
        )
        # Then it succeeded, each step run exactly once, over several segments but not many
        # more than the work needs
        assert done.status is JobStatus.SUCCEEDED, (done.error, lines(shared_dir / "runs"))
        assert done.result is not None and done.result.text == f"all {steps} steps done"
        assert lines(shared_dir / "runs") == list(range(1, steps + 1))
        assert lines(shared_dir / "effects") == list(range(1, steps + 1))
        assert at_least <= done.segments <= at_most
        assert done.attempts == 1
        # And the conversation only grew, the last request holding every step's result
        requests = fake.message_requests
        for earlier, later in itertools.pairwise(requests):
            assert tool_calls(later)[: len(tool_calls(earlier))] == tool_calls(earlier)
        assert finished_steps(requests[-1]) == set(range(1, steps + 1))
        # And a turn was counted for each model call at most (a boundary costs the call it
        # paused; a model call the hard stop cut off was asked for and never answered)
        assert done.usage is not None and done.usage.num_turns <= len(requests), done.usage


def test_a_segments_late_first_call_is_paused_in_the_image_layout(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    shared_dir: Path,
) -> None:
    # Given two ~9 s steps in 20 s invocations (the hard stop at ~18 s: one step a segment),
    # and a model that asks for the second step in the second segment only 10 s after that
    # segment's first request (11-14 s into it: a ~9 s call there would run into the hard stop)
    steps = counting_model(shared_dir, 2, 9.0)
    first_seen: dict[int, float] = {}

    def model(request: RecordedRequest) -> Reply:
        reply = steps(request)
        segment = json.dumps(request.body).count(CONTINUE_PROMPT[:40]) + 1
        first_seen.setdefault(segment, time.monotonic())
        if segment == 2 and isinstance(reply, ToolUse):
            return ToolUse("Bash", reply.input, delay=until(first_seen[2] + 10.0))
        return reply

    with FakeAnthropic(api_key=REAL_KEY, default=model) as fake:
        # When the warm worker process runs it in 20 s invocations
        done = _run_in_image(
            task_root,
            image_site,
            moto_server,
            shared_dir,
            fake,
            "imgseglate",
            max_turns=10,
            invocation=20,
            invocations=5,
        )
    # Then the second segment did not start the call, which the first segment's ~9 s call
    # said would be cut off (it had timed none of its own): it paused, and the third ran it;
    # each step started once and finished once
    assert done.status is JobStatus.SUCCEEDED, (done.error, lines(shared_dir / "runs"))
    assert lines(shared_dir / "runs") == [1, 2] and lines(shared_dir / "effects") == [1, 2]
    assert done.segments == 3
    assert done.segment_tool_ms is not None and done.segment_tool_ms >= 9_000
    # And each model call was one turn, the two paused ones included, and nothing more
    assert done.usage is not None
    assert done.usage.num_turns == len(fake.message_requests) == 5, done.usage

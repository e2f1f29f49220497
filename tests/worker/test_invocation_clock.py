"""A run's stops are points in the invocation: the time Lambda reports as left is read when the
record arrives, and whatever comes before the run (building the processor on a cold start, the
job's read, its claim) comes off them. Otherwise a slow first invocation moves the segment's
turn-boundary stop and its hard stop late, past the margin left to record the segment."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from claude_jobs.models import Job
from claude_jobs.settings import Settings
from claude_jobs.wiring import Container
from claude_jobs.worker.function import WorkerFunction
from claude_jobs.worker.ports import AgentOutcome, AgentRequest, WorkerPorts
from claude_jobs_tools.scripted_agent import Finish, ScriptedRunner

from .conftest import LambdaContext, WorkerStack, sqs_event

#: How long the cold worker takes to build its processor.
COLD = 2.0
#: The invocation's length: its record margin is 2 s, its boundary margin 2 s.
INVOCATION = 20
#: What may pass between the run's request and the agent's start (the agent's clock starts
#: there): the process watch's start, in-process.
SLACK = 0.25


class ColdWorker(WorkerFunction):
    """A worker whose first invocation builds its ports slowly, as a cold start under load."""

    def ports(self) -> WorkerPorts:
        time.sleep(COLD)
        return super().ports()


class Cold:
    def __init__(self, settings: Settings) -> None:
        #: When each run started (monotonic).
        self.runs: list[float] = []
        self.runner = ScriptedRunner(self._run)
        self.worker = ColdWorker(Container(settings), min_run_seconds=1, runner=self.runner)

    def _run(self, request: AgentRequest) -> AgentOutcome:
        self.runs.append(time.monotonic())
        return Finish()(request)

    def invoke(self, job: Job) -> tuple[LambdaContext, AgentRequest, float]:
        """One invocation of the cold worker for `job`: its context, the run's request and
        when the run started."""
        context = LambdaContext(INVOCATION * 1000)
        answer = self.worker.handler(sqs_event(job), context)
        assert answer == {"batchItemFailures": []}
        (request,) = self.runner.requests
        (started,) = self.runs
        return context, request, started


@pytest.fixture
def cold(stack: WorkerStack) -> Iterator[Cold]:
    settings = stack.provisioned.settings.model_copy(
        update={"worker_invocation_seconds": INVOCATION}
    )
    cold = Cold(settings)
    yield cold
    worker = cold.worker
    if "processor" in worker.__dict__:
        worker.processor.ports.proxy.close()


def test_a_cold_start_comes_off_a_segments_stops(stack: WorkerStack, cold: Cold) -> None:
    # Given a job longer than the invocation (a segment of it runs)
    job = stack.submit("Work long.", timeout_seconds=300)
    # When a cold worker's first invocation, 20 s long, takes it
    context, request, started = cold.invoke(job)
    # Then the run's hard stop comes 2 s (the record margin) before the invocation's end, as
    # counted from the invocation's start: the cold start and the claim came off it
    end = context.started + INVOCATION
    assert request.yield_after_seconds is not None
    assert end - 2 - 3 < started + request.deadline_seconds <= end - 2 + SLACK
    assert request.deadline_seconds < INVOCATION - 2 - COLD
    # And so does the turn-boundary stop, 2 s (the boundary margin) before it
    assert request.yield_after_seconds == pytest.approx(request.deadline_seconds - 2, abs=0.01)


def test_a_cold_start_comes_off_a_runs_deadline(stack: WorkerStack, cold: Cold) -> None:
    # Given a job whose own deadline comes before the invocation's end (no segment)
    job = stack.submit("Work briefly.", timeout_seconds=10)
    # When a cold worker's first invocation takes it
    context, request, started = cold.invoke(job)
    # Then the run ends at the job's deadline, counted from when the worker took its message
    assert request.yield_after_seconds is None
    assert context.started + 10 - 3 < started + request.deadline_seconds
    assert started + request.deadline_seconds <= context.started + 10 + SLACK

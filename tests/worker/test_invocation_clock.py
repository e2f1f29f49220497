"""A run's stops are points in the invocation: the time Lambda reports as left is read when the
record arrives, and whatever comes before the run (building the processor on a cold start, the
job's read, its claim) comes off them. Otherwise a slow first invocation moves the segment's
turn-boundary stop and its hard stop late, past the margin left to record the segment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from claude_jobs.models import Job
from claude_jobs.settings import Settings
from claude_jobs.wiring import Container
from claude_jobs.worker.function import WorkerFunction
from claude_jobs.worker.ports import AgentOutcome, AgentRequest, WorkerPorts
from claude_jobs_tools.scripted_agent import Finish, ScriptedRunner

from .conftest import LambdaContext, WorkerStack, sqs_event

#: How long the cold worker takes to build its processor.
COLD = 3.0
#: The invocation's length (long enough for a loaded machine's preparation to leave some):
#: its record margin is 6 s, its boundary margin 6 s.
INVOCATION = 60
RECORD = BOUNDARY = 6
#: What may pass between the run's request and the agent's start (the agent's clock starts
#: there: the process watch's start, in-process) on a loaded machine; the cold start is more.
SLACK = 1.0


class ColdWorker(WorkerFunction):
    """A worker whose first invocation builds its ports slowly, as a cold start under load."""

    def ports(self) -> WorkerPorts:
        time.sleep(COLD)
        return super().ports()


class Cold:
    def __init__(self, settings: Settings, **overrides: Any) -> None:
        #: When each run started (monotonic).
        self.runs: list[float] = []
        self.runner = ScriptedRunner(self._run)
        self.worker = ColdWorker(
            Container(settings), min_run_seconds=1, runner=self.runner, **overrides
        )

    def close(self) -> None:
        if "processor" in self.worker.__dict__:
            self.worker.processor.ports.proxy.close()

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
    cold.close()


def test_a_cold_start_comes_off_a_segments_stops(stack: WorkerStack, cold: Cold) -> None:
    # Given a job longer than the invocation (a segment of it runs)
    job = stack.submit("Work long.", timeout_seconds=300)
    # When a cold worker's first invocation, 60 s long, takes it
    context, request, started = cold.invoke(job)
    # Then the run's hard stop comes 6 s (the record margin) before the invocation's end, as
    # counted from the invocation's start: the cold start and the claim came off it
    end = context.started + INVOCATION
    assert request.yield_after_seconds is not None
    assert end - RECORD - 3 < started + request.deadline_seconds <= end - RECORD + SLACK
    assert request.deadline_seconds < INVOCATION - RECORD - COLD
    # And so does the turn-boundary stop, 6 s (the boundary margin) before it
    assert request.yield_after_seconds == pytest.approx(
        request.deadline_seconds - BOUNDARY, abs=0.01
    )


def test_a_cold_start_comes_off_a_run_that_cannot_be_a_segment(stack: WorkerStack) -> None:
    # Given a worker with no transcript store (a job cannot resume: it runs in one invocation)
    # and a job longer than the invocation
    settings = stack.provisioned.settings.model_copy(
        update={"worker_invocation_seconds": INVOCATION}
    )
    cold = Cold(settings, sessions=None)
    job = stack.submit("Work long.", timeout_seconds=300)
    try:
        # When a cold worker's first invocation takes it
        context, request, started = cold.invoke(job)
    finally:
        cold.close()
    # Then the run stops 6 s before the invocation's end, counted from the invocation's start
    end = context.started + INVOCATION
    assert request.yield_after_seconds is None
    assert end - RECORD - 3 < started + request.deadline_seconds <= end - RECORD + SLACK


def test_a_jobs_own_deadline_counts_from_its_start(stack: WorkerStack, cold: Cold) -> None:
    # Given a job whose own deadline comes before the invocation's end (no segment)
    job = stack.submit("Work briefly.", timeout_seconds=10)
    # When a cold worker's first invocation takes it
    _, request, _ = cold.invoke(job)
    # Then its run has its whole timeout: a job's time counts from its start, not the
    # worker's cold start
    assert request.yield_after_seconds is None
    assert request.deadline_seconds == pytest.approx(10)

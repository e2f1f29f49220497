"""Long jobs in the worker's state machine (in-memory ports, a scripted agent): a segment
ends, the job is re-queued and resumed; cancel, deadline, budget and max_turns hold across
segments; attempts count faults only; a duplicate delivery is harmless."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from claude_jobs.documents import JobDocuments
from claude_jobs.job_service import JobService
from claude_jobs.models import Job, JobRequest, JobStatus, Usage
from claude_jobs.settings import Settings
from claude_jobs.worker.processor import JobProcessor
from claude_jobs.worker.segments import CONTINUE_PROMPT, margins, plan
from tests.fakes import (
    Finish,
    InMemoryDocumentStore,
    InMemoryJobRepository,
    InMemoryQueue,
    ScriptedRunner,
)
from tests.fakes.agent import Step
from tests.fakes.worker import worker_ports
from tests.support.jobs import make_job

NOW = 1_800_000_000.0
#: Lambda time left at each delivery: less than the job's timeout, so each run is a segment.
SHORT = 100.0


class NoTranscripts:
    """A session keeper with nothing to load or save (the state machine is under test)."""

    def prepare(self, job: Job, sandbox: Any) -> None:
        return None

    def save(self, session: Any) -> None:
        raise AssertionError("nothing to save")


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.now = NOW
        self.repo = InMemoryJobRepository()
        self.store = InMemoryDocumentStore()
        self.settings = Settings(max_attempts=3)
        self.service = JobService(
            self.repo, InMemoryQueue(), self.settings, documents=JobDocuments(self.store)
        )
        self.tmp_path = tmp_path

    def submit(self, **options: Any) -> Job:
        request = JobRequest(prompt="Do it all.", timeout_seconds=600, **options)
        return self.service.submit("acme", request).job

    def processor(self, *steps: Step) -> tuple[JobProcessor, ScriptedRunner]:
        runner = ScriptedRunner(*steps)
        processor = JobProcessor(
            worker_ports(
                self.repo,
                JobDocuments(self.store),
                runner=runner,
                settings=self.settings,
                sandbox_dir=str(self.tmp_path),
                clock=lambda: self.now,
                sessions=NoTranscripts(),
            )
        )
        return processor, runner

    def job(self, job: Job) -> Job:
        found = self.repo.get(job.job_id)
        assert found is not None
        return found


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def segment(turns: int = 2, cost: float = 0.25) -> Finish:
    return Finish(
        "segment", text=None, usage=Usage(input_tokens=10, num_turns=turns, total_cost_usd=cost)
    )


def test_the_margins_scale_with_the_invocation_and_stay_within_a_fifth() -> None:
    assert (margins(900).record, margins(900).boundary) == (30.0, 60.0)
    for seconds in (10, 15, 60, 300, 900):
        assert margins(seconds).total <= seconds / 5


def test_a_segment_requeues_the_job_and_the_next_resumes_it(world: World) -> None:
    # Given a job longer than one invocation
    job = world.submit(max_turns=10, max_budget_usd=1.0)
    processor, runner = world.processor(
        segment(), Finish(usage=Usage(num_turns=3, total_cost_usd=0.5))
    )
    # When the first invocation's run ends its segment
    first = processor.process(job.job_id, remaining_seconds=SHORT)
    # Then the job is queued again, continuing, with the usage so far, one attempt, one segment
    assert first.action == "segmented"
    queued = world.job(job)
    assert queued.status is JobStatus.QUEUED and queued.continuing
    assert queued.attempts == 1 and queued.segments == 1
    assert queued.usage is not None and queued.usage.num_turns == 2
    assert queued.deadline_at is not None
    # The run was a segment: stopped at a turn boundary before the invocation's end
    # (less what preparing the run took: its stops are points in the invocation)
    assert 0 < runner.requests[0].deadline_seconds <= SHORT - 30
    yield_after = runner.requests[0].yield_after_seconds
    assert yield_after == pytest.approx(runner.requests[0].deadline_seconds - 60)
    # When the next invocation takes it, then it is not an attempt, and it gets what is left
    world.now += 80
    second = processor.process(job.job_id, remaining_seconds=900)
    assert second.action == "ran" and second.status is JobStatus.SUCCEEDED
    request = runner.requests[1]
    assert request.options.max_turns == 8
    assert request.options.max_budget_usd == pytest.approx(0.75)
    assert request.deadline_seconds == pytest.approx(600 - 80)  # the absolute deadline
    assert request.yield_after_seconds is None  # the job's deadline comes first now
    done = world.job(job)
    assert done.attempts == 1 and done.segments == 2 and not done.continuing
    assert done.usage is not None
    assert (done.usage.num_turns, done.usage.total_cost_usd) == (5, 0.75)
    assert done.usage.input_tokens == 10  # the first segment's 10 + the last run's 0


def test_a_duplicate_delivery_of_a_segments_message_runs_nothing(world: World) -> None:
    """Given a job whose next segment already ran to its end, when the message comes again,
    then it is skipped: the agent runs once per segment."""
    job = world.submit()
    processor, runner = world.processor(segment(), Finish())
    processor.process(job.job_id, remaining_seconds=SHORT)
    processor.process(job.job_id, remaining_seconds=900)
    again = processor.process(job.job_id, remaining_seconds=900)
    assert again.action == "skipped:terminal"
    assert len(runner.requests) == 2


def test_a_cancel_between_segments_ends_the_job_at_once(world: World) -> None:
    job = world.submit()
    processor, runner = world.processor(segment())
    processor.process(job.job_id, remaining_seconds=SHORT)
    cancelled = world.service.cancel("acme", job.job_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert processor.process(job.job_id, remaining_seconds=900).action == "skipped:terminal"
    assert len(runner.requests) == 1
    kept = world.job(job).usage
    assert kept is not None and kept.num_turns == 2  # what it used is still recorded


def test_the_deadline_is_absolute_across_segments(world: World) -> None:
    """Given a segment that ended, when the job is taken again after its deadline (from its
    first start) has passed, then it ends timed_out without running the agent."""
    job = world.submit()
    processor, runner = world.processor(segment())
    processor.process(job.job_id, remaining_seconds=SHORT)
    world.now += 601
    processed = processor.process(job.job_id, remaining_seconds=900)
    assert processed.status is JobStatus.TIMED_OUT
    done = world.job(job)
    assert done.error is not None and done.error.code == "timed_out"
    assert done.usage is not None and done.usage.num_turns == 2
    assert len(runner.requests) == 1


def test_turns_and_budget_hold_across_segments(world: World) -> None:
    """Given segments that used every turn, the next ends max_turns without running; given
    one that spent the budget, the next run's spending limit is what is left (nothing)."""
    job = world.submit(max_turns=2)
    processor, runner = world.processor(segment(turns=2))
    processor.process(job.job_id, remaining_seconds=SHORT)
    processed = processor.process(job.job_id, remaining_seconds=900)
    assert processed.status is JobStatus.FAILED
    assert world.job(job).error.code == "max_turns"  # type: ignore[union-attr]
    assert len(runner.requests) == 1

    spender = world.submit(max_budget_usd=0.25)
    processor, runner = world.processor(segment(cost=0.25), Finish())
    proxy: Any = processor.ports.proxy
    processor.process(spender.job_id, remaining_seconds=SHORT)
    processor.process(spender.job_id, remaining_seconds=900)
    first, second = list(proxy.limits.values())
    assert (first, second) == (pytest.approx(0.25), pytest.approx(0.0))


def test_plan_without_a_session_runs_one_invocation() -> None:
    """A job with no session to resume from is never segmented: it runs until the earlier of
    its deadline and the invocation's end."""
    from claude_jobs.models import JobOptions

    job = make_job(
        "j", tenant="t", created_at=datetime.now(UTC), options=JobOptions(timeout_seconds=600)
    )
    run = plan(job, datetime.now(UTC), 100, margins(900), segmentable=False)
    assert run.yield_after is None and run.run_seconds == 70
    assert CONTINUE_PROMPT  # the prompt a resumed segment gets

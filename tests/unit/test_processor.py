"""The worker's job state machine on in-memory ports: claim, skip, exhaust, release, finish,
cancel. No AWS, no CLI: a scripted agent plays each run (the moto + real-CLI tests in
tests/worker are the integration layer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from claude_jobs.documents import JobDocuments
from claude_jobs.errors import TenantLimitError
from claude_jobs.job_service import JobService
from claude_jobs.models import Job, JobRequest, JobStatus
from claude_jobs.ports import TenantUsage, Transition
from claude_jobs.settings import Settings
from claude_jobs.worker.agent import AgentOutcome, AgentRequest, AgentStartError
from claude_jobs.worker.processor import JobProcessor, WorkerFault
from tests.fakes import (
    FakeProxy,
    Finish,
    InMemoryDocumentStore,
    InMemoryJobRepository,
    InMemoryQueue,
    RaiseFault,
    ScriptedRunner,
    WaitForStop,
)
from tests.fakes.agent import Step
from tests.fakes.worker import worker_ports

NOW = 1_800_000_000.0
MAX_ATTEMPTS = 3


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    repo: InMemoryJobRepository
    store: InMemoryDocumentStore
    service: JobService
    proxy: FakeProxy
    clock: Clock
    sandbox_dir: Path
    settings: Settings = field(default_factory=lambda: Settings(max_attempts=MAX_ATTEMPTS))

    def submit(self, prompt: str = "Say hello.", **options: object) -> Job:
        return self.service.submit("acme", JobRequest(prompt=prompt, **options)).job

    def processor(self, *steps: Step) -> tuple[JobProcessor, ScriptedRunner]:
        runner = ScriptedRunner(*steps)
        processor = JobProcessor(
            worker_ports(
                self.repo,
                JobDocuments(self.store),
                runner=runner,
                proxy=self.proxy,
                settings=self.settings,
                sandbox_dir=str(self.sandbox_dir),
                clock=self.clock,
            )
        )
        return processor, runner

    def job(self, job: Job) -> Job:
        found = self.repo.get(job.job_id)
        assert found is not None
        return found

    def left_running(self, job: Job, *, attempts: int, lease_from_now: float) -> Job:
        """As a worker that claimed the job and died would leave it."""
        return self.repo.transition(
            Transition(
                job_id=job.job_id,
                to=JobStatus.RUNNING,
                add_attempts=attempts,
                set_fields={"lease_until": int(self.clock.now + lease_from_now)},
            )
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    repo = InMemoryJobRepository()
    store = InMemoryDocumentStore()
    settings = Settings(max_attempts=MAX_ATTEMPTS)
    service = JobService(repo, InMemoryQueue(), settings, documents=JobDocuments(store))
    return World(repo, store, service, FakeProxy(), Clock(), tmp_path)


def test_a_claimed_job_runs_once_and_records_its_result(world: World) -> None:
    # Given a queued job
    job = world.submit("What is 2 + 2?")
    processor, runner = world.processor(Finish(text="4"))
    # When its message is processed
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then the agent ran once on its prompt, and the job succeeded with the text
    assert processed.action == "ran" and processed.status is JobStatus.SUCCEEDED
    assert [r.prompt for r in runner.requests] == ["What is 2 + 2?"]
    done = world.job(job)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1
    assert done.result is not None and done.result.text == "4"
    assert done.usage is not None and done.usage.input_tokens == 3
    # And the prompt is no longer kept, nor is the lease or the job's proxy token
    assert done.prompt is None and done.lease_until is None
    assert world.proxy.tokens == {}


def test_a_job_running_under_a_live_lease_is_skipped(world: World) -> None:
    # Given a job another worker holds, its lease still live
    job = world.left_running(world.submit(), attempts=1, lease_from_now=60)
    processor, runner = world.processor()
    # When its message is delivered again
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then nothing runs and the job is left as it was
    assert processed.action == "skipped:leased"
    assert runner.requests == []
    assert world.job(job) == job
    # And the message is to come back once the lease has lapsed (not to be deleted)
    assert processed.retry_in is not None and 55 <= processed.retry_in <= 62


def test_a_terminal_job_is_skipped(world: World) -> None:
    # Given a job that already succeeded
    job = world.submit()
    first, _ = world.processor(Finish(text="once"))
    first.process(job.job_id, remaining_seconds=900)
    processor, runner = world.processor()
    # When its message comes back
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then the agent does not run again and the result stays
    assert processed.action == "skipped:terminal"
    assert runner.requests == []
    done = world.job(job)
    assert done.result is not None and done.result.text == "once"


def test_a_job_that_used_every_attempt_fails_without_a_run(world: World) -> None:
    # Given a job whose last allowed claim died (lease expired)
    job = world.left_running(world.submit(), attempts=MAX_ATTEMPTS, lease_from_now=-5)
    processor, runner = world.processor()
    # When its message comes back
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then it ends failed (attempts_exhausted) and the agent never ran
    assert processed.action == "exhausted"
    assert runner.requests == []
    failed = world.job(job)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == "attempts_exhausted"
    assert failed.prompt is None


def test_an_infrastructure_fault_releases_the_job_then_the_last_attempt_fails_it(
    world: World,
) -> None:
    # Given a job whose runs all hit an infrastructure fault
    job = world.submit()
    fault = RaiseFault(AgentStartError("the CLI could not start"))
    processor, runner = world.processor(*[fault] * MAX_ATTEMPTS)
    # When its message is processed: the first attempts are released for a retry
    for attempt in range(1, MAX_ATTEMPTS):
        with pytest.raises(WorkerFault):
            processor.process(job.job_id, remaining_seconds=900)
        released = world.job(job)
        assert released.status is JobStatus.QUEUED and released.attempts == attempt
        assert released.lease_until is None
    # And the last one ends the job instead of releasing it
    processed = processor.process(job.job_id, remaining_seconds=900)
    assert processed.action == "exhausted"
    failed = world.job(job)
    assert failed.status is JobStatus.FAILED and failed.attempts == MAX_ATTEMPTS
    assert failed.error is not None and failed.error.code == "attempts_exhausted"
    assert "AgentStartError" in failed.error.message
    assert len(runner.requests) == MAX_ATTEMPTS


def test_a_proxy_that_died_during_the_run_is_a_fault_not_a_result(world: World) -> None:
    # Given a run during which the key proxy stops
    job = world.submit()

    def proxy_dies(request: AgentRequest) -> AgentOutcome:
        world.proxy.stopped = True
        return Finish(text="unreliable")(request)

    processor, _ = world.processor(proxy_dies)
    # When it is processed
    with pytest.raises(WorkerFault):
        processor.process(job.job_id, remaining_seconds=900)
    # Then the job is given back to the queue, its text not recorded
    released = world.job(job)
    assert released.status is JobStatus.QUEUED and released.result is None


def test_a_result_is_recorded_only_while_the_claim_holds(world: World) -> None:
    # Given a run that takes so long that another worker takes the job over meanwhile
    job = world.submit()

    def taken_over(request: AgentRequest) -> AgentOutcome:
        world.clock.now += 3600  # our lease expired …
        world.left_running(world.job(job), attempts=1, lease_from_now=600)  # … and was re-claimed
        return Finish(text="late")(request)

    processor, _ = world.processor(taken_over)
    # When the first run ends
    processor.process(job.job_id, remaining_seconds=900)
    # Then its result is not written over the newer claim
    current = world.job(job)
    assert current.status is JobStatus.RUNNING and current.attempts == 2
    assert current.result is None


def test_a_job_cancelled_before_any_claim_never_runs(world: World) -> None:
    # Given a queued job cancelled by its owner
    job = world.submit()
    world.service.cancel("acme", job.job_id)
    processor, runner = world.processor()
    # When its message arrives
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then it stays cancelled and the agent never runs
    assert processed.action == "skipped:terminal"
    assert runner.requests == []
    assert world.job(job).status is JobStatus.CANCELLED


def test_a_cancel_requested_while_no_worker_held_the_job_ends_it_at_the_next_claim(
    world: World,
) -> None:
    # Given a job left running (lease expired) whose cancel was asked for meanwhile
    job = world.left_running(world.submit(), attempts=1, lease_from_now=-5)
    world.service.cancel("acme", job.job_id)
    processor, runner = world.processor()
    # When its message comes back
    processor.process(job.job_id, remaining_seconds=900)
    # Then it ends cancelled without a run
    assert runner.requests == []
    assert world.job(job).status is JobStatus.CANCELLED


def test_a_cancel_requested_during_the_run_stops_it(world: World) -> None:
    # Given a run that lasts until it is told to stop, and its owner cancelling it meanwhile
    job = world.submit()

    def cancelled_meanwhile(request: AgentRequest) -> AgentOutcome:
        world.service.cancel("acme", job.job_id)
        return WaitForStop()(request)

    processor, _ = world.processor(cancelled_meanwhile)
    # When it is processed
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then the job ends cancelled
    assert processed.status is JobStatus.CANCELLED
    done = world.job(job)
    assert done.status is JobStatus.CANCELLED
    assert done.error is not None and done.error.code == "cancelled"


def test_too_little_lambda_time_left_is_retried_without_a_claim(world: World) -> None:
    # Given a job and an invocation about to end
    job = world.submit()
    processor, runner = world.processor()
    # When its message is processed with only a few seconds left
    with pytest.raises(WorkerFault):
        processor.process(job.job_id, remaining_seconds=30.5)
    # Then the job was not claimed (no attempt used) and nothing ran
    assert world.job(job).status is JobStatus.QUEUED and world.job(job).attempts == 0
    assert runner.requests == []


def test_large_request_documents_reach_the_agent_from_the_store_and_are_then_deleted(
    world: World,
) -> None:
    # Given a job whose prompt, system prompt and schema are too large for its item
    prompt, system = "p" * 100_000, "s" * 20_000
    schema = {"type": "object", "description": "d" * 5_000}
    job = world.submit(prompt, system_prompt=system, output_schema=schema)
    assert job.prompt is None and set(job.documents) == {
        "prompt",
        "system_prompt",
        "output_schema",
    }
    processor, runner = world.processor(Finish(text="r" * 300_000, structured={"a": [1] * 600}))
    # When it runs
    processor.process(job.job_id, remaining_seconds=900)
    # Then the agent got them exactly
    (request,) = runner.requests
    assert (request.prompt, request.system_prompt) == (prompt, system)
    assert request.options.output_schema == schema
    # And the prompts' objects are gone while the schema and the large results are kept
    done = world.job(job)
    assert set(done.documents) == {"output_schema", "structured"}
    assert done.result is not None and done.result.text is None
    assert done.result.s3_key is not None and done.result.text_bytes == 300_000
    assert sorted(world.store.objects) == sorted(
        [done.documents["output_schema"], done.documents["structured"], done.result.s3_key]
    )
    # And the API shows what the caller would have seen inline
    view = world.service.view(done)
    assert view.result is not None and view.result.structured == {"a": [1] * 600}
    assert view.result.text is None and view.result.download_url is not None
    assert view.request.output_schema == schema


def test_output_that_cannot_be_stored_ends_the_job_once(world: World) -> None:
    # Given a run whose output must go to a documents store that refuses every write
    job = world.submit()
    world.store.fail_puts = True
    processor, runner = world.processor(Finish(text="x" * 5000))
    # When it is processed
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then the job ends failed (output_unstorable), not given back for another run
    assert processed.status is JobStatus.FAILED
    failed = world.job(job)
    assert failed.status is JobStatus.FAILED and failed.result is None
    assert failed.error is not None and failed.error.code == "output_unstorable"
    assert failed.usage is not None and failed.usage.input_tokens == 3
    # And a redelivery of its message does not run the agent again
    assert processor.process(job.job_id, remaining_seconds=900).action == "skipped:terminal"
    assert len(runner.requests) == 1


def test_a_run_whose_job_was_taken_over_is_told_to_stop(world: World) -> None:
    # Given a run during which another worker re-claims the job (our lease had expired)
    job = world.submit()

    def taken_over_then_waits(request: AgentRequest) -> AgentOutcome:
        world.left_running(world.job(job), attempts=1, lease_from_now=600)
        return WaitForStop(max_seconds=3)(request)

    processor, _ = world.processor(taken_over_then_waits)
    # When it is processed
    processed = processor.process(job.job_id, remaining_seconds=900)
    # Then the run was told to stop (it ended, no fault), and the newer claim was left alone
    assert processed.action == "ran"
    current = world.job(job)
    assert current.status is JobStatus.RUNNING and current.attempts == 2


# ---------------------------------------------------------------- fair sharing


def shared_world(world: World, share: int) -> World:
    """The world with a running share of `share` jobs per tenant."""
    settings = Settings(max_attempts=MAX_ATTEMPTS, tenant_max_running=share)
    world.settings = settings
    world.service = JobService(
        world.repo, InMemoryQueue(), settings, documents=JobDocuments(world.store)
    )
    return world


def test_a_job_of_a_tenant_at_its_running_share_waits_unchanged(world: World) -> None:
    # Given tenant acme runs one job already and has another queued, with a share of one
    world = shared_world(world, 1)
    running = world.submit("first")
    queued = world.submit("second")
    processor, runner = world.processor(WaitForStop())
    world.repo.transition(
        Transition(job_id=running.job_id, to=JobStatus.RUNNING, add_attempts=1, running_share=1)
    )
    # When the queued job's message is processed
    processed = processor.process(queued.job_id, remaining_seconds=900)
    # Then it is deferred: no agent run, no attempt, the job exactly as it was
    assert processed.action == "deferred" and processed.status is JobStatus.QUEUED
    assert runner.requests == []
    assert world.job(queued) == queued


def test_one_tenants_backlog_does_not_starve_another_tenants_job(world: World) -> None:
    # Given tenant acme runs one job (a long one, on another worker) and has five more queued
    # ahead of tenant beta's single job in the queue, with a running share of one
    world = shared_world(world, 1)
    long_one = world.submit("long")
    world.repo.transition(
        Transition(job_id=long_one.job_id, to=JobStatus.RUNNING, add_attempts=1, running_share=1)
    )
    backlog = [world.submit(f"acme {i}") for i in range(5)]
    beta = world.service.submit("beta", JobRequest(prompt="beta's job")).job
    processor, runner = world.processor(*[Finish(text="done") for _ in range(6)])
    queue = [job.job_id for job in [*backlog, beta]]
    # When one worker takes the messages in order, putting deferred ones at the back
    taken: list[str] = []
    while queue and beta.job_id not in taken:
        job_id = queue.pop(0)
        processed = processor.process(job_id, remaining_seconds=900)
        taken.append(job_id)
        if processed.action == "deferred":
            queue.append(job_id)
    # Then beta's job ran on the first pass, while acme's backlog waited unclaimed
    assert world.job(beta).status is JobStatus.SUCCEEDED
    assert [r.prompt for r in runner.requests] == ["beta's job"]
    assert all(world.job(j).status is JobStatus.QUEUED for j in backlog)
    assert all(world.job(j).attempts == 0 for j in backlog)
    # And once acme's long job ends, its backlog drains, each job run once
    world.repo.transition(Transition(job_id=long_one.job_id, to=JobStatus.SUCCEEDED))
    rounds = 0
    while queue and rounds < 100:
        rounds += 1
        job_id = queue.pop(0)
        if processor.process(job_id, remaining_seconds=900).action == "deferred":
            queue.append(job_id)
    assert [world.job(j).status for j in backlog] == [JobStatus.SUCCEEDED] * 5
    assert [world.job(j).attempts for j in backlog] == [1] * 5
    assert sorted(r.prompt for r in runner.requests) == sorted(
        ["beta's job", *(f"acme {i}" for i in range(5))]
    )
    # And no job of either tenant is counted any more
    assert world.repo.tenant_usage("acme") == TenantUsage()
    assert world.repo.tenant_usage("beta") == TenantUsage()


@pytest.mark.parametrize("ending", ["fault_then_exhausted", "finished", "exhausted_unclaimed"])
def test_every_end_of_a_run_frees_the_tenants_slots(world: World, ending: str) -> None:
    # Given a queued job
    job = world.submit()
    if ending == "fault_then_exhausted":
        processor, _ = world.processor(
            *[RaiseFault(AgentStartError("the CLI could not start")) for _ in range(MAX_ATTEMPTS)]
        )
        for _ in range(MAX_ATTEMPTS):
            # When every run hits an infrastructure fault (released, then failed at the cap)
            try:
                processor.process(job.job_id, remaining_seconds=900)
            except WorkerFault:
                assert world.repo.tenant_usage("acme") == TenantUsage(pending=1, running=0)
    elif ending == "finished":
        processor, _ = world.processor(Finish(text="ok"))
        processor.process(job.job_id, remaining_seconds=900)
    else:
        world.left_running(job, attempts=MAX_ATTEMPTS, lease_from_now=-1)
        processor, _ = world.processor()
        processor.process(job.job_id, remaining_seconds=900)
    # Then the job is terminal and nothing of it is counted
    assert world.job(job).status.is_terminal
    assert world.repo.tenant_usage("acme") == TenantUsage(pending=0, running=0)


def test_a_submission_over_the_pending_cap_is_refused_and_replays_are_not_counted(
    world: World,
) -> None:
    # Given a cap of two pending jobs and two jobs submitted, one with an Idempotency-Key
    service = JobService(
        world.repo,
        InMemoryQueue(),
        Settings(tenant_max_pending=2),
        documents=JobDocuments(world.store),
    )
    first = service.submit("acme", JobRequest(prompt="one"), idempotency_key="k").job
    service.submit("acme", JobRequest(prompt="two"))
    # When the keyed request is replayed, and a third is submitted
    replay = service.submit("acme", JobRequest(prompt="one"), idempotency_key="k")
    with pytest.raises(TenantLimitError) as refused:
        service.submit("acme", JobRequest(prompt="three"))
    # Then the replay returns the first job, the third is refused with a time to come back,
    # and two jobs are counted
    assert replay.job.job_id == first.job_id and not replay.created
    assert refused.value.retry_after_seconds >= 1
    assert world.repo.tenant_usage("acme") == TenantUsage(pending=2, running=0)
    # And another tenant may still submit; a cancel makes room again
    service.submit("beta", JobRequest(prompt="b"))
    service.cancel("acme", first.job_id)
    assert service.submit("acme", JobRequest(prompt="three")).created

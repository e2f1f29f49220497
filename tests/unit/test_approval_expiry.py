"""The approval sweep on in-memory ports: a due approval ends its job `failed` /
`approval_expired` (prompts dropped), a not-yet-due one waits, a decision racing the sweep
wins cleanly, a waiting job is never re-driven and counts as pending, not running."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from claude_jobs.approval_models import APPROVAL_EXPIRED
from claude_jobs.documents import JobDocuments
from claude_jobs.job_service import JobService
from claude_jobs.models import Job, JobRequest, JobStatus
from claude_jobs.ports import Transition
from claude_jobs.reconcile.expiry import ApprovalExpiry
from claude_jobs.reconcile.reconciler import Reconciler, Slots, Snapshot, UnfinishedJob
from claude_jobs.settings import Settings
from tests.fakes import InMemoryDocumentStore, InMemoryJobRepository, InMemoryQueue
from tests.support.approvals import make_wait

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def wait_for_approval(repo: InMemoryJobRepository, job: Job, approval_id: str, seconds: int) -> Job:
    """As the worker leaves a job whose call waits: running → awaiting_approval."""
    return make_wait(
        repo,
        job.job_id,
        approval_id=approval_id,
        now=T0,
        waited=timedelta(0),
        expires_in=timedelta(seconds=seconds),
    )


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    repo: InMemoryJobRepository = field(default_factory=InMemoryJobRepository)
    store: InMemoryDocumentStore = field(default_factory=InMemoryDocumentStore)
    clock: Clock = field(default_factory=Clock)

    def submit(self, prompt: str = "Push the branch", tenant: str = "acme") -> Job:
        service = JobService(
            self.repo, InMemoryQueue(), Settings(), documents=JobDocuments(self.store)
        )
        request = JobRequest.model_validate(
            {"prompt": prompt, "allowed_tools": ["Bash"], "approvals": ["Bash(git push:*)"]}
        )
        return service.submit(tenant, request).job

    def expiry(self) -> ApprovalExpiry:
        return ApprovalExpiry(self.repo, JobDocuments(self.store), clock=self.clock)


@pytest.fixture
def world() -> World:
    return World()


def test_a_due_approval_ends_the_job_failed_and_drops_its_prompts(world: World) -> None:
    # Given a job with a prompt too large for the item, waiting on a call for 60 s
    job = world.submit("x" * 90_000)
    assert job.documents and world.store.objects
    waiting = wait_for_approval(world.repo, job, "apr_1", 60)
    assert world.repo.tenant_usage("acme").pending == 1
    # When the sweep runs after the approval's expiry
    world.clock.now = T0 + timedelta(seconds=61)
    ended = world.expiry().expire(job.job_id, "apr_1")
    # Then the job is failed / approval_expired, with a message naming the call and timeout
    assert ended is not None
    stored = world.repo.get(job.job_id)
    assert stored is not None and stored.status is JobStatus.FAILED
    assert stored.error is not None and stored.error.code == APPROVAL_EXPIRED
    assert "Bash" in stored.error.message and "approval timeout" in stored.error.message
    assert stored.finished_at == world.clock.now and stored.version == waiting.version + 1
    # And nothing waits any more; the prompts are gone from the item and the store
    assert stored.pending_approval is None and stored.prompt is None
    assert stored.documents == {} and world.store.objects == {}
    # And the tenant's slot is free
    assert world.repo.tenant_usage("acme").pending == 0


def test_an_approval_not_yet_due_or_of_another_id_is_left_alone(world: World) -> None:
    job = world.submit()
    waiting = wait_for_approval(world.repo, job, "apr_1", 60)
    # When the sweep runs a second before the expiry, or names a stale approval id
    world.clock.now = T0 + timedelta(seconds=59)
    assert world.expiry().expire(job.job_id, "apr_1") is None
    world.clock.now = T0 + timedelta(seconds=3600)
    assert world.expiry().expire(job.job_id, "apr_0") is None
    # Then the job still waits, unchanged
    stored = world.repo.get(job.job_id)
    assert stored is not None and stored.version == waiting.version
    assert stored.status is JobStatus.AWAITING_APPROVAL


class DecidingRepository(InMemoryJobRepository):
    """A decision lands between the sweep's read and its write."""

    def __init__(self) -> None:
        super().__init__()
        self.decide_on_read: str | None = None

    def get(self, job_id: str) -> Job | None:
        read = super().get(job_id)
        if self.decide_on_read == job_id:
            self.decide_on_read = None
            self.transition(
                Transition(
                    job_id=job_id,
                    to=JobStatus.QUEUED,
                    from_=[JobStatus.AWAITING_APPROVAL],
                    set_fields={"pending_approval": None},
                )
            )
        return read


def test_a_decision_racing_the_sweep_wins_and_the_job_goes_on(world: World) -> None:
    world.repo = DecidingRepository()
    job = world.submit("y" * 90_000)
    wait_for_approval(world.repo, job, "apr_1", 10)
    world.clock.now = T0 + timedelta(seconds=11)
    world.repo.decide_on_read = job.job_id
    # When the sweep reads the due job and a decision queues it before the sweep writes
    assert world.expiry().expire(job.job_id, "apr_1") is None
    # Then the decision stands: the job is queued, its prompts kept, its slot still pending
    stored = world.repo.get(job.job_id)
    assert stored is not None and stored.status is JobStatus.QUEUED and stored.error is None
    assert stored.documents and world.store.objects
    assert world.repo.tenant_usage("acme").pending == 1


@dataclass
class ListStore:
    """A reconcile store over a fixed snapshot, recording what it was asked to do."""

    jobs: list[UnfinishedJob]
    slots: dict[str, Slots]
    redrives: list[str] = field(default_factory=list)
    drifts: list[tuple[str, tuple[int, int]]] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.jobs, self.slots)

    def redriven(self, job: UnfinishedJob, next_due: float) -> bool:
        self.redrives.append(job.job_id)
        return True

    def note_drift(self, slots: Slots, counted: tuple[int, int]) -> None:
        self.drifts.append((slots.tenant_id, counted))

    def repair(self, slots: Slots, counted: tuple[int, int]) -> bool:
        return True

    def clear_drift(self, slots: Slots) -> None:
        pass


@dataclass
class Waker:
    woken: list[str] = field(default_factory=list)

    def wake(self, job_id: str, tenant_id: str) -> None:
        self.woken.append(job_id)


def test_the_reconciler_never_re_drives_a_waiting_job_and_counts_it_pending(
    world: World,
) -> None:
    # Given a tenant with one waiting job (created long ago, no lease, no message) and one
    # running job, and counters that say so: two pending, one running
    now = T0.timestamp() + 7200
    waiting = UnfinishedJob(
        "job-w", "acme", "awaiting_approval", T0.timestamp(), None, None, 0, "apr_1", now + 600
    )
    running = UnfinishedJob("job-r", "acme", "running", T0.timestamp(), now + 600)
    store = ListStore([waiting, running], {"acme": Slots("acme", 2, 1)})
    waker = Waker()
    reconciler = Reconciler(
        store, waker, clock=lambda: now, grace_seconds=60, expirer=world.expiry()
    )
    # When it runs
    outcome = reconciler.run()
    # Then nothing is re-driven or expired, and the counters are right as they are
    assert outcome.redriven == [] and waker.woken == [] and store.redrives == []
    assert outcome.expired == [] and outcome.drifting == [] and store.drifts == []


def test_the_reconciler_expires_only_due_approvals(world: World) -> None:
    due = wait_for_approval(world.repo, world.submit(), "apr_due", 10)
    later = wait_for_approval(world.repo, world.submit(), "apr_later", 3600)
    world.clock.now = T0 + timedelta(seconds=30)
    now = world.clock.now.timestamp()
    jobs = []
    for j in (due, later):
        assert j.pending_approval is not None
        pending = j.pending_approval
        jobs.append(
            UnfinishedJob(
                j.job_id,
                "acme",
                "awaiting_approval",
                T0.timestamp(),
                approval_id=pending.approval_id,
                approval_expires=pending.expires_at.timestamp(),
            )
        )
    store = ListStore(jobs, {"acme": Slots("acme", 2, 0)})
    reconciler = Reconciler(
        store, Waker(), clock=lambda: now, grace_seconds=60, expirer=world.expiry()
    )
    assert reconciler.run().expired == [due.job_id]
    assert world.repo.get(due.job_id).status is JobStatus.FAILED  # type: ignore[union-attr]
    assert world.repo.get(later.job_id).status is JobStatus.AWAITING_APPROVAL  # type: ignore[union-attr]

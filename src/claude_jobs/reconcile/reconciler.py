"""Re-drive jobs whose message may have vanished; re-count each tenant's slots.

The jobs table is the truth; a job's SQS message only wakes a worker. A message can vanish
without the job ending: an agent that reaches the Lambda Runtime API may answer its own
worker's invocation or take the next one (docs/adr/0001-runtime-api.md), a DLQ may swallow
it, a bug may delete it. Every run (a schedule, about once a minute):

- a **queued** job whose message was due more than `grace` seconds ago (`message_due`: when
  the worker or the last re-drive expects it to be received at the latest, else the job's
  creation) gets a new message, and its next due time backs off (x2 per re-drive, at most
  `max_backoff`), so a job that merely waits in a backlog gets a few duplicates, not a flood;
- a **running** job whose lease ended more than `grace` seconds ago (and that no re-drive has
  sent a message for since) gets a new message: the worker that held it is gone, and its
  message may be too.

A re-driven message that finds its job already claimed, running under a live lease, or
terminal is skipped by the worker's conditional claim: never a second agent run.

- an **awaiting_approval** job is never re-driven (it has no message on purpose: no worker
  waits for it); once its `pending_approval.expires_at` has passed it ends `failed` /
  `approval_expired` (:mod:`claude_jobs.reconcile.expiry`, a conditional write: a decision
  that lands first wins);
- each tenant's `pending`/`running` counters are compared with its non-terminal jobs (a job awaiting
  approval is pending, not running); a
  difference seen in two runs in a row, with the counter unchanged in between, is repaired
  (a conditional write on the values read): a transition that lands between the index query
  and the read changes the counter and defers the repair to a later run.

A run reads only what it may act on: the keys of the sparse unfinished-jobs index (queued,
running and waiting jobs, and the tenants' counters), then those items consistently. The jobs
the table keeps after they end (their retention) are never read, so a run's cost follows the
work in flight, not the history.

Counts `JobsRedriven`, `SlotDrift` (tenants repaired) and `ApprovalsExpired`; the
infrastructure alarms on the first two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..observability import count, get_logger

AWAITING_APPROVAL = "awaiting_approval"
#: Approvals a run ended (their jobs failed / approval_expired): the operations dashboard's.
APPROVALS_EXPIRED_METRIC = "ApprovalsExpired"


@dataclass(frozen=True)
class UnfinishedJob:
    """What the reconciler reads of a queued, running or awaiting_approval job."""

    job_id: str
    tenant_id: str
    status: str  # "queued" | "running" | "awaiting_approval"
    created: float  # epoch seconds
    lease_until: float | None = None
    message_due: float | None = None
    redrives: int = 0
    #: awaiting_approval: the call that waits, and when it expires (epoch seconds).
    approval_id: str | None = None
    approval_expires: float | None = None


@dataclass(frozen=True)
class Slots:
    """A tenant's counters as stored, and the drift seen by the last run (if any)."""

    tenant_id: str
    pending: int
    running: int
    #: (pending, running, counted pending, counted running) of the previous run's drift.
    drift: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Snapshot:
    jobs: list[UnfinishedJob]
    slots: dict[str, Slots]


class ReconcileStore(Protocol):
    def snapshot(self) -> Snapshot:
        """Every queued, running or awaiting_approval job and every tenant's counters."""

    def redriven(self, job: UnfinishedJob, next_due: float) -> bool:
        """Note a re-drive (conditional on the job's status being unchanged): False when the
        job moved on meanwhile (then nothing is sent)."""

    def note_drift(self, slots: Slots, counted: tuple[int, int]) -> None:
        """Remember this run's drift on the tenant's counter (conditional on its values)."""

    def repair(self, slots: Slots, counted: tuple[int, int]) -> bool:
        """Set the counters to `counted` if they still hold the values read."""

    def clear_drift(self, slots: Slots) -> None: ...


class JobWaker(Protocol):
    def wake(self, job_id: str, tenant_id: str) -> None:
        """Send the job's message again."""


class ApprovalExpirer(Protocol):
    def expire(self, job_id: str, approval_id: str) -> object | None:
        """End the job `failed` / `approval_expired` if it still waits on `approval_id` and
        that is due; None when it does not (decided, cancelled, not due)."""


@dataclass
class Outcome:
    redriven: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    drifting: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        store: ReconcileStore,
        waker: JobWaker,
        *,
        clock: Callable[[], float],
        grace_seconds: float,
        max_backoff_seconds: float = 900,
        expirer: ApprovalExpirer | None = None,
    ) -> None:
        self._store = store
        self._waker = waker
        self._expirer = expirer
        self._clock = clock
        self._grace = grace_seconds
        self._max_backoff = max_backoff_seconds

    def run(self) -> Outcome:
        snapshot = self._store.snapshot()
        outcome = Outcome()
        now = self._clock()
        for job in snapshot.jobs:
            if job.status == AWAITING_APPROVAL:
                if self._expire(job, now):
                    outcome.expired.append(job.job_id)
            elif self._stale(job, now) and self._redrive(job, now):
                outcome.redriven.append(job.job_id)
        self._recount(snapshot, outcome)
        log = get_logger()
        if outcome.expired:
            log.info("expired %d approvals", len(outcome.expired), extra={"jobs": outcome.expired})
        if outcome.redriven:
            log.warning("re-drove %d jobs", len(outcome.redriven), extra={"jobs": outcome.redriven})
        if outcome.repaired:
            log.warning("repaired slot counters", extra={"tenants": outcome.repaired})
        count("JobsRedriven", len(outcome.redriven))
        count("SlotDrift", len(outcome.repaired))
        count(APPROVALS_EXPIRED_METRIC, len(outcome.expired))
        return outcome

    def _expire(self, job: UnfinishedJob, now: float) -> bool:
        """A waiting job is never re-driven; it only ends once its approval is due."""
        if self._expirer is None or job.approval_id is None or job.approval_expires is None:
            return False
        if now < job.approval_expires:
            return False
        return self._expirer.expire(job.job_id, job.approval_id) is not None

    def _stale(self, job: UnfinishedJob, now: float) -> bool:
        if job.status == "queued":
            return now > max(job.created, job.message_due or 0) + self._grace
        if job.status == "running":
            if job.lease_until is None:
                return False
            return now > max(job.lease_until, job.message_due or 0) + self._grace
        return False

    def _redrive(self, job: UnfinishedJob, now: float) -> bool:
        backoff = min(max(self._grace, 30) * 2**job.redrives, self._max_backoff)
        if not self._store.redriven(job, now + backoff):
            return False
        self._waker.wake(job.job_id, job.tenant_id)
        return True

    def _recount(self, snapshot: Snapshot, outcome: Outcome) -> None:
        counted: dict[str, tuple[int, int]] = {}
        for job in snapshot.jobs:
            pending, running = counted.get(job.tenant_id, (0, 0))
            counted[job.tenant_id] = (pending + 1, running + (job.status == "running"))
        tenants = set(counted) | set(snapshot.slots)
        for tenant in sorted(tenants):
            slots = snapshot.slots.get(tenant, Slots(tenant, 0, 0))
            actual = counted.get(tenant, (0, 0))
            if (slots.pending, slots.running) == actual:
                if slots.drift is not None:
                    self._store.clear_drift(slots)
                continue
            seen = (slots.pending, slots.running, *actual)
            if slots.drift == seen:  # the same drift twice in a row, the counter unchanged
                if self._store.repair(slots, actual):
                    outcome.repaired.append(tenant)
            else:
                self._store.note_drift(slots, actual)
                outcome.drifting.append(tenant)

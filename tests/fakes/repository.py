"""The job repository in memory, with the DynamoDB adapter's conditional semantics."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from claude_jobs.clock import epoch, iso
from claude_jobs.errors import (
    IdempotencyReplayError,
    InvalidCursorError,
    JobNotFoundError,
    TenantAtShareError,
    TenantLimitError,
    TransitionConflictError,
)
from claude_jobs.models import Job, JobErrorInfo, JobStatus
from claude_jobs.ports import (
    IdempotencyClaim,
    IdempotencyRecord,
    JobControl,
    JobPage,
    SessionClaim,
    TenantUsage,
    Transition,
)
from claude_jobs.state import slot_changes

from .sessions import InMemorySessionRepository

_FIXED_FIELDS = frozenset({"job_id", "tenant_id", "version"})


def _check_field(name: str) -> None:
    if name not in Job.model_fields or name in _FIXED_FIELDS:
        raise ValueError(f"{name!r} is not a job field a write may change")


def _position(job: Job) -> str:
    return f"{iso(job.created_at)}#{job.job_id}"


class InMemoryJobRepository:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._claims: dict[tuple[str, str], IdempotencyRecord] = {}
        self._usage: dict[str, TenantUsage] = {}
        self._lock = threading.Lock()
        #: The sessions `create` takes, under the same lock.
        self.sessions = InMemorySessionRepository(self._lock)
        #: Every write that changed a job, in order: (job_id, status written).
        self.writes: list[tuple[str, JobStatus]] = []
        #: The reconciler's note of when a job's message is due (`Transition.message_due`).
        self.message_due: dict[str, datetime] = {}

    # ------------------------------------------------------------ create / read

    def create(
        self,
        job: Job,
        claim: IdempotencyClaim | None = None,
        *,
        max_pending: int | None = None,
        session: SessionClaim | None = None,
    ) -> None:
        with self._lock:
            if job.job_id in self._jobs:
                raise ValueError(f"job {job.job_id} exists")
            if claim is not None:
                held = self._claims.get((claim.tenant_id, claim.key))
                if held is not None and held.expires_at >= epoch(job.created_at):
                    raise IdempotencyReplayError(held.job_id, held.body_hash)
            if session is not None:
                self.sessions.check(session)
            usage = self._usage.get(job.tenant_id, TenantUsage())
            if max_pending is not None and usage.pending >= max_pending:
                raise TenantLimitError(f"{usage.pending} jobs pending (at most {max_pending})")
            if session is not None:
                self.sessions.take(session)
            self._usage[job.tenant_id] = TenantUsage(usage.pending + 1, usage.running)
            if claim is not None:
                self._claims[(claim.tenant_id, claim.key)] = IdempotencyRecord(
                    job.job_id, claim.body_hash, claim.expires_at
                )
            self._jobs[job.job_id] = job.model_copy(deep=True)
            self.writes.append((job.job_id, job.status))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job is not None else None

    def tenant_usage(self, tenant_id: str) -> TenantUsage:
        with self._lock:
            return self._usage.get(tenant_id, TenantUsage())

    def control(self, job_id: str) -> JobControl | None:
        job = self.get(job_id)
        if job is None:
            return None
        return JobControl(job.status, job.cancel_requested, job.attempts)

    def list_for_tenant(
        self, tenant_id: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> JobPage:
        with self._lock:
            jobs = sorted(
                (j for j in self._jobs.values() if j.tenant_id == tenant_id),
                key=_position,
                reverse=True,
            )
        if cursor is not None:
            after = cursor.get("after")
            if set(cursor) != {"after"} or not isinstance(after, str) or not after:
                raise InvalidCursorError("not a position in this listing")
            jobs = [j for j in jobs if _position(j) < after]
        page = [j.model_copy(deep=True) for j in jobs[:limit]]
        more = len(jobs) > limit
        last = page[-1] if page and more else None
        return JobPage(
            jobs=page,
            cursor={"after": _position(last)} if last is not None else None,
        )

    def list_awaiting_approval(
        self, tenant_id: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> JobPage:
        def key(job: Job) -> str:
            assert job.pending_approval is not None
            return f"{iso(job.pending_approval.requested_at)}#{job.job_id}"

        with self._lock:
            jobs = sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.tenant_id == tenant_id
                    and j.status is JobStatus.AWAITING_APPROVAL
                    and j.pending_approval is not None
                ),
                key=key,
            )
        if cursor is not None:
            after = cursor.get("a")
            if set(cursor) != {"a"} or not isinstance(after, str) or "#" not in after:
                raise InvalidCursorError("not a position in this listing")
            jobs = [j for j in jobs if key(j) > after]
        page = [j.model_copy(deep=True) for j in jobs[:limit]]
        more = len(jobs) > limit
        return JobPage(jobs=page, cursor={"a": key(page[-1])} if more else None)

    # ------------------------------------------------------------ writes

    def transition(self, change: Transition) -> Job:
        sources = change.sources()
        if not sources:
            raise TransitionConflictError(f"no status may become {change.to}")
        written = self._write(
            change.job_id,
            change.fields(),
            change.remove_fields,
            change.add_attempts,
            sources,
            change.expected_version,
            change.expected_attempts,
            change.running_share,
        )
        if change.message_due is not None:
            with self._lock:
                self.message_due[change.job_id] = change.message_due
        return written

    def update(
        self,
        job_id: str,
        *,
        set_fields: Mapping[str, Any],
        expected_status: Sequence[JobStatus],
    ) -> Job:
        return self._write(job_id, set_fields, (), 0, list(expected_status), None, None, None)

    def _write(
        self,
        job_id: str,
        set_fields: Mapping[str, Any],
        remove_fields: Sequence[str],
        add_attempts: int,
        statuses: Sequence[JobStatus],
        expected_version: int | None,
        expected_attempts: int | None,
        running_share: int | None,
    ) -> Job:
        for name in [*set_fields, *remove_fields]:
            _check_field(name)
        with self._lock:
            current = self._jobs.get(job_id)
            if current is None:
                raise JobNotFoundError(f"job {job_id} not found")
            if (
                current.status not in statuses
                or (expected_version is not None and current.version != expected_version)
                or (expected_attempts is not None and current.attempts != expected_attempts)
            ):
                raise TransitionConflictError(
                    f"job {job_id} is {current.status}", current=current.model_copy(deep=True)
                )
            data = current.model_dump()
            for name in remove_fields:
                data.pop(name, None)
            if "usage" in set_fields:  # the usage recorded holds what the spend journal held
                data.pop("unrecorded_usd", None)
            for name, value in set_fields.items():
                if value is None:
                    data.pop(name, None)
                else:
                    data[name] = copy.deepcopy(value)
            data["version"] = current.version + 1
            data["attempts"] = current.attempts + add_attempts
            written = Job.model_validate(data)
            # The tenant's counts change with the job, in the same (locked) write.
            pending, running = slot_changes(current.status, written.status)
            usage = self._usage.get(current.tenant_id, TenantUsage())
            if running > 0 and running_share is not None and usage.running >= running_share:
                raise TenantAtShareError(f"{usage.running} jobs running (share {running_share})")
            self._usage[current.tenant_id] = TenantUsage(
                usage.pending + pending, usage.running + running
            )
            self._jobs[job_id] = written
            self.writes.append((job_id, written.status))
            return written.model_copy(deep=True)

    def journal_spend(self, job_id: str, attempts: int, usd: float) -> bool:
        with self._lock:
            current = self._jobs.get(job_id)
            if (
                current is None
                or current.status is not JobStatus.RUNNING
                or current.attempts != attempts
            ):
                return False
            self._jobs[job_id] = current.model_copy(update={"unrecorded_usd": usd})
            return True

    def fail_dispatch(
        self, job_id: str, claim: IdempotencyClaim | None, message: str, at: datetime
    ) -> None:
        self.transition(
            Transition(
                job_id=job_id,
                from_=[JobStatus.QUEUED],
                to=JobStatus.FAILED,
                set_fields={
                    "error": JobErrorInfo(code="dispatch_failed", message=message),
                    "finished_at": at,
                },
            )
        )
        if claim is not None:
            with self._lock:
                held = self._claims.get((claim.tenant_id, claim.key))
                if held is not None and held.job_id == job_id:
                    del self._claims[(claim.tenant_id, claim.key)]

"""Ports: what the domain needs from the outside world. Adapters in `adapters/` implement them
with AWS; tests may implement them with fakes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .models import Job, JobStatus, SessionRecord
from .state import sources_for


@dataclass(frozen=True)
class IdempotencyClaim:
    """Reserve (tenant, Idempotency-Key) for a new job, valid until `expires_at` (epoch s)."""

    tenant_id: str
    key: str
    body_hash: str
    expires_at: int


@dataclass(frozen=True)
class SessionClaim:
    """Take session `session_id` for job `job_id`, in the job's own create.

    `new`: the session is created (it must not exist). Otherwise it must exist, belong to
    `tenant_id`, not be deleted, and be held by `expected_active` (the job that held it when it
    was read, now ended) or by none: the write's condition, so that of two submissions racing
    for one session exactly one gets it. The job is appended to its `job_ids`."""

    session_id: str
    tenant_id: str
    job_id: str
    at: datetime
    expires_at: int  # epoch seconds: the item expires with its transcripts
    new: bool
    expected_active: str | None = None


@dataclass(frozen=True)
class IdempotencyRecord:
    job_id: str
    body_hash: str
    expires_at: int


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    cursor: dict[str, Any] | None  # opaque position after the last job, None at the end


@dataclass(frozen=True)
class JobControl:
    """What a running job's worker watches: a few attributes, not the job."""

    status: JobStatus
    cancel_requested: bool
    attempts: int


@dataclass(frozen=True)
class TenantUsage:
    """A tenant's jobs counted for fair sharing: pending (queued or running) and running."""

    pending: int = 0
    running: int = 0


@dataclass(frozen=True)
class Transition:
    """A conditional move of job `job_id` to status `to` (`JobRepository.transition`).

    `from_` narrows the statuses the state machine allows `to` from (None: all of them).
    `set_fields` maps names of `Job` fields to domain values (a None value removes the field,
    as does naming it in `remove_fields`); `add_attempts` counts claims. `expected_version` /
    `expected_attempts`: the job's values the write requires, when given. `running_share`: a
    claim of a queued job succeeds only while the tenant runs fewer jobs than that.
    `message_due`: the reconciler's note that the job's message is due by then (a job queued
    again: it leaves the job alone until then, and re-drives it after)."""

    job_id: str
    to: JobStatus
    from_: Sequence[JobStatus] | None = None
    set_fields: Mapping[str, Any] | None = None
    remove_fields: Sequence[str] = ()
    add_attempts: int = 0
    expected_version: int | None = None
    expected_attempts: int | None = None
    running_share: int | None = None
    message_due: datetime | None = None

    def sources(self) -> list[JobStatus]:
        """The statuses the job may be in for the write to happen."""
        return [s for s in sources_for(self.to) if self.from_ is None or s in self.from_]

    def fields(self) -> dict[str, Any]:
        """The fields written: `set_fields` and the status."""
        return {**(self.set_fields or {}), "status": self.to}


class JobRepository(Protocol):
    """Keeps each tenant's `TenantUsage` exact: a job counts as pending from `create` until
    the write that makes it terminal, and as running from its claim until the write that
    releases or ends it; each count changes in the same atomic write as the job."""

    def create(
        self,
        job: Job,
        claim: IdempotencyClaim | None = None,
        *,
        max_pending: int | None = None,
        session: SessionClaim | None = None,
    ) -> None:
        """Store a new job (and its idempotency record, and its take of its session) in one
        write, counting it pending.

        Raises IdempotencyReplayError when the claim is already held by a live record (nothing
        is counted), else SessionConflictError when the session's condition does not hold,
        else TenantLimitError when the tenant already has `max_pending` pending jobs."""

    @property
    def sessions(self) -> SessionRepository:
        """The sessions that `create` takes (stored with the jobs)."""

    def tenant_usage(self, tenant_id: str) -> TenantUsage: ...

    def get(self, job_id: str) -> Job | None: ...

    def control(self, job_id: str) -> JobControl | None:
        """The job's control attributes, possibly a moment stale (an eventually consistent
        read of a few attributes): for polls whose answer is acted on by a conditional write
        or simply polled again."""

    def list_for_tenant(
        self, tenant_id: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> JobPage: ...

    def list_awaiting_approval(
        self, tenant_id: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> JobPage:
        """The tenant's jobs that wait for a decision (`awaiting_approval`), oldest request
        first: at most `limit`, and a cursor when there may be more (InvalidCursorError for a
        cursor this repository did not return). Possibly a moment stale."""

    def transition(self, change: Transition) -> Job:
        """Conditionally make `change` and return the job as written.

        The write succeeds only if the job's status is one of `change.sources()` and its
        `version` / `attempts` are the expected ones when given. Every write bumps `version`.
        Raises JobNotFoundError, or TransitionConflictError (with the current job) when a
        condition does not hold.

        The tenant's usage changes with the job (`state.slot_changes`). A claim of a queued job
        with `running_share` succeeds only while the tenant runs fewer jobs than that; else
        TenantAtShareError, and nothing is written."""

    def update(
        self,
        job_id: str,
        *,
        set_fields: Mapping[str, Any],
        expected_status: Sequence[JobStatus],
    ) -> Job:
        """Update fields of a job in one of `expected_status` without changing its status."""

    def journal_spend(self, job_id: str, attempts: int, usd: float) -> bool:
        """The spend journal: set the job's `unrecorded_usd` to `usd`, only while the job is
        `running` in attempt `attempts` (False, and nothing written, otherwise). It changes
        nothing the API shows, so it does not bump `version`. A write that records `usage`
        removes it (the usage holds it from then on)."""

    def fail_dispatch(
        self, job_id: str, claim: IdempotencyClaim | None, message: str, at: datetime
    ) -> None:
        """Mark a queued job failed because it could not be queued, and free its idempotency
        key so that the caller's retry creates a fresh job."""


class SessionRepository(Protocol):
    """Sessions (conversations) as stored. A job takes its session in its own create
    (`JobRepository.create` with a `SessionClaim`); the rest is here."""

    def get(self, session_id: str) -> SessionRecord | None:
        """A session as stored (strongly consistent), whatever its tenant; None if unknown."""

    def mark_deleted(self, session_id: str, tenant_id: str, expected_active: str | None) -> None:
        """Mark the session deleted (it can no longer be read or continued) under the same
        condition as a continuation's; SessionConflictError when it does not hold."""

    def remove(self, session_id: str) -> None:
        """Remove a session's item (after its transcripts are gone)."""


class EventStore(Protocol):
    """A job's progress events (JSON-mode dicts with an integer `seq`), stored in batches.

    A batch holds at most `MAX_BATCH_EVENTS` events with consecutive `seq`s; batches are
    written in `seq` order and never change."""

    def last_seq(self, job_id: str) -> int:
        """The highest stored `seq` of the job (0: none), read consistently."""

    def append(self, job_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Store one batch. Writing the same batch again is a no-op (a retried write); a batch
        whose first `seq` another batch holds raises EventSeqConflictError."""

    def read(self, job_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        """At most `limit` events with `seq` > `after`, in `seq` order."""


class SessionTranscripts(Protocol):
    """The sessions' transcripts (the SDK's SessionStore, as the API needs it)."""

    def delete(self, tenant_id: str, session_id: str) -> None: ...


class JobQueue(Protocol):
    def send(self, job: Job) -> None: ...


class DocumentStore(Protocol):
    """A job's documents too large for its item (prompts, schemas, results), by object key."""

    def put(self, tenant_id: str, job_id: str, name: str, body: bytes, content_type: str) -> str:
        """Store one document of a job; return its key (tenant-scoped)."""

    def get(self, key: str) -> str: ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def download_url(self, key: str) -> str: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class Vault(Protocol):
    """The tenants' vaults (MCP servers' credentials): named values per tenant, write-only
    from outside. Only the worker reads a value (`get`), for its own tenant's job; nothing
    returns one to a caller, logs it or stores it elsewhere."""

    def put(self, tenant_id: str, name: str, value: str) -> None:
        """Store (or replace) the tenant's entry `name`."""

    def names(self, tenant_id: str) -> list[str]:
        """The tenant's entries' names, sorted (never their values)."""

    def delete(self, tenant_id: str, name: str) -> bool:
        """Delete the tenant's entry; False when there was none."""

    def get(self, tenant_id: str, name: str) -> str | None:
        """The entry's value (None: no such entry); raises on an infrastructure fault."""

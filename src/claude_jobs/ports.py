"""Ports: what the domain needs from the outside world. Adapters in `adapters/` implement them
with AWS; tests may implement them with fakes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .models import Job, JobStatus


@dataclass(frozen=True)
class IdempotencyClaim:
    """Reserve (tenant, Idempotency-Key) for a new job, valid until `expires_at` (epoch s)."""

    tenant_id: str
    key: str
    body_hash: str
    expires_at: int


@dataclass(frozen=True)
class IdempotencyRecord:
    job_id: str
    body_hash: str
    expires_at: int


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    cursor: dict[str, Any] | None  # opaque position after the last job, None at the end


class JobRepository(Protocol):
    def create(self, job: Job, claim: IdempotencyClaim | None = None) -> None:
        """Store a new job (and its idempotency record) in one write.

        Raises IdempotencyReplayError when the claim is already held by a live record."""

    def get(self, job_id: str) -> Job | None: ...

    def list_for_tenant(
        self, tenant_id: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> JobPage: ...

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        *,
        set_fields: Mapping[str, Any] | None = None,
        remove_fields: Sequence[str] = (),
        increment: Mapping[str, int] | None = None,
        allowed_from: Sequence[JobStatus] | None = None,
        condition: str | None = None,
        condition_values: Mapping[str, Any] | None = None,
    ) -> Job:
        """Conditionally move a job to `target` and return it as written.

        The write succeeds only if the job's status is one the state machine allows `target`
        from (narrowed by `allowed_from`) and `condition` (a DynamoDB condition on the item's
        attributes, values named `:c_*`) holds. Raises JobNotFoundError or
        TransitionConflictError (with the current job) otherwise."""

    def update(
        self,
        job_id: str,
        *,
        set_fields: Mapping[str, Any],
        expected_status: Sequence[JobStatus],
    ) -> Job:
        """Update fields of a job in one of `expected_status` without changing its status."""

    def fail_dispatch(
        self, job_id: str, claim: IdempotencyClaim | None, message: str, at: datetime
    ) -> None:
        """Mark a queued job failed because it could not be queued, and free its idempotency
        key so that the caller's retry creates a fresh job."""


class JobQueue(Protocol):
    def send(self, job: Job) -> None: ...


class ResultStore(Protocol):
    def put_text(self, job_id: str, text: str) -> str:
        """Store a result text; return the object key."""

    def get_text(self, key: str) -> str: ...

    def download_url(self, key: str) -> str: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...

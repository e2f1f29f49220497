"""The session repository in memory, with the DynamoDB adapter's conditional semantics."""

from __future__ import annotations

import threading

from claude_jobs.errors import SessionConflictError
from claude_jobs.models import SessionRecord
from claude_jobs.ports import SessionClaim


class InMemorySessionRepository:
    """Sessions by id. `InMemoryJobRepository` shares one (and its lock): a job's create checks
    and takes its session in the same locked write, as the adapter's transaction does."""

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._lock = lock or threading.Lock()

    def get(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            record = self._records.get(session_id)
            return record.model_copy(deep=True) if record is not None else None

    def mark_deleted(self, session_id: str, tenant_id: str, expected_active: str | None) -> None:
        with self._lock:
            record = self._holds(session_id, tenant_id, expected_active)
            self._records[session_id] = record.model_copy(update={"deleted": True})

    def remove(self, session_id: str) -> None:
        with self._lock:
            self._records.pop(session_id, None)

    # A job's create, under the lock its repository holds.

    def check(self, session: SessionClaim) -> None:
        """SessionConflictError unless `session` may be taken."""
        if session.new:
            if session.session_id in self._records:
                raise SessionConflictError(f"session {session.session_id} exists")
        else:
            self._holds(session.session_id, session.tenant_id, session.expected_active)

    def take(self, session: SessionClaim) -> None:
        """Create or continue the session for its job (checked first)."""
        if session.new:
            self._records[session.session_id] = SessionRecord(
                session_id=session.session_id,
                tenant_id=session.tenant_id,
                created_at=session.at,
                updated_at=session.at,
                job_ids=[session.job_id],
                active_job=session.job_id,
            )
            return
        record = self._records[session.session_id]
        self._records[session.session_id] = record.model_copy(
            update={
                "active_job": session.job_id,
                "updated_at": session.at,
                "job_ids": [*record.job_ids, session.job_id],
            }
        )

    def _holds(self, session_id: str, tenant_id: str, expected_active: str | None) -> SessionRecord:
        record = self._records.get(session_id)
        if (
            record is None
            or record.tenant_id != tenant_id
            or record.deleted
            or record.active_job not in (None, expected_active)
        ):
            raise SessionConflictError(f"session {session_id}")
        return record

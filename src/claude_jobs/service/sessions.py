"""Sessions: read one, delete one, and the checks a continuation makes."""

from __future__ import annotations

from ..errors import SessionBusyError, SessionConflictError, SessionNotFoundError
from ..models import SessionRecord, SessionView
from .context import ServiceContext

#: Tries of a session write that lost a race (the session changed since it was read).
SESSION_TRIES = 3


def find_session(ctx: ServiceContext, tenant_id: str, session_id: str) -> SessionRecord:
    record = ctx.sessions.get(session_id)
    if record is None or record.tenant_id != tenant_id or record.deleted:
        # Another tenant's session is indistinguishable from a missing one.
        raise SessionNotFoundError(f"No session {session_id}.")
    return record


def check_idle(ctx: ServiceContext, record: SessionRecord) -> None:
    """SessionBusyError while the job that holds the session is queued or running."""
    if record.active_job is None:
        return
    active = ctx.repo.get(record.active_job)
    if active is not None and not active.status.is_terminal:
        raise SessionBusyError(
            f"Session {record.session_id} has a job {active.status.value} "
            f"({active.job_id}); continue it once that job has ended."
        )


def get_session(ctx: ServiceContext, tenant_id: str, session_id: str) -> SessionView:
    record = find_session(ctx, tenant_id, session_id)
    return SessionView(
        session_id=record.session_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        job_ids=record.job_ids,
    )


def delete_session(ctx: ServiceContext, tenant_id: str, session_id: str) -> None:
    """Delete a session that no job is queued or running in: it is marked deleted (from then
    on it is unknown), its transcripts are removed, then its item."""
    record = ctx.sessions.get(session_id)
    if record is not None and record.tenant_id == tenant_id and record.deleted:
        _remove_session(ctx, tenant_id, session_id)  # finish an interrupted delete
        return
    for _ in range(SESSION_TRIES):
        record = find_session(ctx, tenant_id, session_id)
        check_idle(ctx, record)
        try:
            ctx.sessions.mark_deleted(session_id, tenant_id, record.active_job)
            break
        except SessionConflictError:
            continue
    else:
        raise SessionBusyError("The session is being continued by another request.")
    _remove_session(ctx, tenant_id, session_id)


def _remove_session(ctx: ServiceContext, tenant_id: str, session_id: str) -> None:
    if ctx.transcripts is not None:
        ctx.transcripts.delete(tenant_id, session_id)
    ctx.sessions.remove(session_id)

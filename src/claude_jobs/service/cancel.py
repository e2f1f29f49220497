"""Cancelling a job."""

from __future__ import annotations

from ..documents import PROMPTS
from ..errors import TransitionConflictError
from ..models import Job, JobStatus
from ..ports import Transition
from .context import ServiceContext
from .queries import get


def cancel(ctx: ServiceContext, tenant_id: str, job_id: str) -> Job:
    """Cancel a queued job, or one awaiting a decision, at once; ask a running one to stop
    (the worker watches).

    A job already terminal is returned unchanged."""
    job = get(ctx, tenant_id, job_id)
    try:
        if job.status in (JobStatus.QUEUED, JobStatus.AWAITING_APPROVAL):
            # Nothing runs either: it ends now (a decision racing it finds another version).
            cancelled = ctx.repo.transition(
                Transition(
                    job_id=job_id,
                    from_=[job.status],
                    to=JobStatus.CANCELLED,
                    set_fields={
                        "finished_at": ctx.clock(),
                        "documents": {k: v for k, v in job.documents.items() if k not in PROMPTS},
                    },
                    remove_fields=[*PROMPTS, "pending_approval"],
                    expected_version=job.version,
                )
            )
            ctx.documents.discard_prompts(job)
            return cancelled
        if job.status is JobStatus.RUNNING:
            return ctx.repo.update(
                job_id, set_fields={"cancel_requested": True}, expected_status=[JobStatus.RUNNING]
            )
    except TransitionConflictError as conflict:
        # It moved on meanwhile (started, or finished): act on where it is now.
        if isinstance(conflict.current, Job) and not conflict.current.status.is_terminal:
            return cancel(ctx, tenant_id, job_id)
        return get(ctx, tenant_id, job_id)
    return job

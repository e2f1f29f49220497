"""Approvals that nobody answered in time: the job ends `failed` / `approval_expired`.

The reconciler's schedule finds the due ones (no process waits for them); each ends in one
conditional write on the version read (awaiting_approval → failed, pending approval removed,
prompts dropped from the item and the documents store as every terminal write does). A
decision or a cancel that lands first wins: the write's condition fails and the job is left
to them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..approval_models import APPROVAL_EXPIRED
from ..clock import utcnow
from ..documents import PROMPTS, JobDocuments
from ..errors import JobNotFoundError, TransitionConflictError
from ..models import Job, JobErrorInfo, JobStatus
from ..ports import JobRepository, Transition


def expiry_message(job: Job) -> str:
    pending = job.pending_approval
    tool = pending.tool if pending else "a call"
    seconds = job.options.approval_timeout_seconds
    return (
        f"nobody decided on the {tool} call within the job's approval timeout "
        f"({seconds} s); the call did not run"
    )


class ApprovalExpiry:
    def __init__(
        self,
        repo: JobRepository,
        documents: JobDocuments,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._repo = repo
        self._documents = documents
        self._clock = clock

    def expire(self, job_id: str, approval_id: str) -> Job | None:
        """End the job if it still waits on `approval_id` and that has expired; None when it
        does not (any more), or when a decision or cancel won the race."""
        job = self._repo.get(job_id)
        pending = job.pending_approval if job is not None else None
        if job is None or job.status is not JobStatus.AWAITING_APPROVAL or pending is None:
            return None
        now = self._clock()
        if pending.approval_id != approval_id or pending.expires_at > now:
            return None
        try:
            ended = self._repo.transition(
                Transition(
                    job_id=job_id,
                    from_=[JobStatus.AWAITING_APPROVAL],
                    to=JobStatus.FAILED,
                    set_fields={
                        "finished_at": now,
                        "error": JobErrorInfo(code=APPROVAL_EXPIRED, message=expiry_message(job)),
                        "documents": {k: v for k, v in job.documents.items() if k not in PROMPTS},
                    },
                    remove_fields=[*PROMPTS, "pending_approval"],
                    expected_version=job.version,
                )
            )
        except (TransitionConflictError, JobNotFoundError):
            return None  # decided, cancelled or gone meanwhile
        self._documents.discard_prompts(job)
        return ended

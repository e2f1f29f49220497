"""Give a tenant's slots back for jobs that ended without a worker's terminal write.

- **Dead-lettered message** (`lost`): the jobs queue moved a job's message to its dead-letter
  queue after `maxReceiveCount` receives, so no worker will finish it. A job still queued, or
  running under a lapsed lease, ends `failed` with `error.code = worker_lost`: one conditional
  write that frees its slots in the same transaction (the repository's counted transition), so
  it happens once however often the message is seen. A terminal job is never changed; a job
  running under a live lease is looked at again when the lease ends (its worker may finish it).
- **Removed item** (`removed`): the table's TTL (or anyone) deleted a job item that was still
  queued or running. Nothing can make that job terminal any more, so its slots are freed from
  the stream's old image, once (a release marker is written in the same transaction).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ..errors import JobNotFoundError, TransitionConflictError
from ..models import Job, JobStatus
from ..observability import count, get_logger
from ..ports import Transition
from ..state import slot_changes

WORKER_LOST = "worker_lost"
WORKER_LOST_MESSAGE = (
    "No worker could finish this job: its message was delivered the most times the queue "
    "allows and then set aside (dead-lettered). Submit it again."
)


class LostJobs(Protocol):
    """What `SlotKeeper.lost` needs of the job repository."""

    def get(self, job_id: str) -> Job | None: ...

    def transition(self, change: Transition) -> Job: ...


class SlotReleases(Protocol):
    """Frees a removed job's slots at most once (`False`: they were freed already)."""

    def release(self, job_id: str, tenant_id: str, pending: int, running: int) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    job_id: str | None
    action: Literal["failed", "skipped", "later", "released"]
    #: `later`: look again after this many seconds (a live lease).
    retry_in: float | None = None
    reason: str = ""


class SlotKeeper:
    def __init__(
        self,
        jobs: LostJobs,
        releases: SlotReleases,
        clock: Callable[[], float] = lambda: datetime.now(UTC).timestamp(),
    ) -> None:
        self._jobs = jobs
        self._releases = releases
        self._clock = clock

    def lost(self, body: str) -> Outcome:
        """One dead-lettered jobs-queue message. AWS faults raise (the message is retried)."""
        try:
            message = json.loads(body)
            job_id = str(message["job_id"])
        except (ValueError, TypeError, KeyError):
            get_logger().warning("dead-lettered message is not a job message: dropped")
            return Outcome(None, "skipped", reason="not a job message")
        job = self._jobs.get(job_id)
        if job is None:
            return Outcome(job_id, "skipped", reason="no such job")
        if job.status.is_terminal:
            return Outcome(job_id, "skipped", reason=f"already {job.status.value}")
        now = self._clock()
        if job.status is JobStatus.RUNNING and (job.lease_until or 0) > now:
            return Outcome(job_id, "later", retry_in=(job.lease_until or 0) - now + 1)
        try:
            ended = self._jobs.transition(
                Transition(
                    job_id=job_id,
                    from_=[job.status],
                    to=JobStatus.FAILED,
                    set_fields={
                        "error": {"code": WORKER_LOST, "message": WORKER_LOST_MESSAGE},
                        "finished_at": datetime.fromtimestamp(now, UTC),
                        "lease_until": None,
                    },
                    expected_version=job.version,
                )
            )
        except JobNotFoundError:
            return Outcome(job_id, "skipped", reason="no such job")
        except TransitionConflictError as conflict:
            # It changed since it was read (a worker claimed or ended it): look again.
            current = conflict.current
            if isinstance(current, Job) and current.status.is_terminal:
                return Outcome(job_id, "skipped", reason=f"already {current.status.value}")
            return Outcome(job_id, "later", retry_in=1.0, reason="changed while read")
        count("JobsWorkerLost")
        get_logger().warning(
            "job ended worker_lost: its message dead-lettered",
            extra={"job_id": job_id, "tenant_id": ended.tenant_id},
        )
        return Outcome(job_id, "failed")

    def removed(self, old_image: Mapping[str, Any] | None) -> Outcome:
        """One REMOVE record's old image (DynamoDB JSON) of the jobs table."""
        if not old_image or "status" not in old_image or "tenant_id" not in old_image:
            return Outcome(None, "skipped", reason="not a job item")
        job_id = _string(old_image.get("job_id"))
        status = _status(old_image.get("status"))
        tenant_id = _string(old_image.get("tenant_id"))
        if not job_id or not tenant_id or status is None or status.is_terminal:
            return Outcome(job_id or None, "skipped", reason="not a pending job")
        pending, running = slot_changes(status, JobStatus.FAILED)
        if not self._releases.release(job_id, tenant_id, -pending, -running):
            return Outcome(job_id, "skipped", reason="released already")
        count("JobSlotsReleased")
        get_logger().warning(
            "a %s job's item was removed: its slots are freed",
            status.value,
            extra={"job_id": job_id, "tenant_id": tenant_id},
        )
        return Outcome(job_id, "released")


def _string(value: Any) -> str:
    if isinstance(value, Mapping):
        found = value.get("S")
        return found if isinstance(found, str) else ""
    return ""


def _status(value: Any) -> JobStatus | None:
    try:
        return JobStatus(_string(value))
    except ValueError:
        return None

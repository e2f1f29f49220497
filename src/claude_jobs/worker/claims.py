"""A job's claim: take it (with a lease), watch it while the agent runs, give it back.

Every write here is conditional: on the version just read (the claim), or on the attempt our
claim added (release, re-queue), so that a job another worker took over is never changed.
"""

from __future__ import annotations

from typing import Any

from ..errors import JobNotFoundError, TransitionConflictError
from ..models import Job, JobErrorInfo, JobStatus
from ..observability import deferred_logger
from ..ports import Transition
from .ports import AgentOutcome, Journal, WorkerPorts
from .processed import Action, Processed, WorkerFault
from .recording import at, end_job
from .scrub import Scrubber
from .segments import with_unrecorded

log = deferred_logger()  # Powertools' structured logger

ATTEMPTS_EXHAUSTED = "attempts_exhausted"


def skip_reason(ports: WorkerPorts, job: Job | None) -> str:
    """Why this job is not to be claimed now ("" when it is)."""
    if job is None:
        return "unknown"
    if job.status.is_terminal:
        return "terminal"
    if job.status is JobStatus.AWAITING_APPROVAL:
        return "awaiting"
    if job.status is JobStatus.RUNNING and (job.lease_until or 0) > ports.clock():
        return "leased"
    return ""


def claim(ports: WorkerPorts, job: Job, deadline: float) -> Job:
    """`queued|running(lease expired) → running` on the version read, adding one attempt and a
    lease until the deadline (+ margin). TenantAtShareError: its tenant runs its share."""
    now = ports.clock()
    fields: dict[str, Any] = {
        "lease_until": int(now + deadline + ports.margin_seconds) + 1,
        # Long jobs: one more run; the deadline is fixed at the first start.
        "segments": job.segments + 1,
        "continuing": None,
    }
    if job.deadline_at is None:
        fields["deadline_at"] = at(now + job.options.timeout_seconds)
    if job.started_at is None or not job.continuing:
        fields["started_at"] = at(now)
    if job.unrecorded_usd:  # an attempt whose worker died: what it may have spent counts
        fields["usage"] = with_unrecorded(job)
    return ports.jobs.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.RUNNING,
            from_=[job.status],
            set_fields=fields,
            # A re-queued segment's claim is not an attempt: attempts count faults only.
            add_attempts=0 if job.continuing else 1,
            remove_fields=["error"],
            expected_version=job.version,
            running_share=ports.settings.tenant_max_running,
        )
    )


def spend_journal(ports: WorkerPorts, job: Job) -> Journal:
    """The claimed job's spend journal: its exposure written to the job while this claim
    (its attempt) holds it."""

    def journal(usd: float) -> bool:
        return ports.jobs.journal_spend(job.job_id, job.attempts, usd)

    return journal


def exhaust_unclaimed(ports: WorkerPorts, job: Job) -> Processed:
    """A job that has used `max_attempts` claims ends `failed` instead of being claimed (what
    its last attempt journaled counted in its usage)."""
    error = JobErrorInfo(
        code=ATTEMPTS_EXHAUSTED,
        message=f"the job was started {job.attempts} times without finishing "
        "(the worker stopped before recording a result)",
    )
    fields = {"usage": with_unrecorded(job)} if job.unrecorded_usd else None
    try:
        ended = end_job(ports, job, JobStatus.FAILED, error=error, fields=fields, claimed=False)
    except TransitionConflictError:
        return Processed(job.job_id, Action.SKIPPED_CONFLICT)
    log.warning("job %s failed: %s", job.job_id, ATTEMPTS_EXHAUSTED)
    return Processed(job.job_id, Action.EXHAUSTED, ended.status)


def cancel_requested(ports: WorkerPorts, job: Job) -> bool:
    """Polled every few seconds while the agent runs: a few attributes, eventually
    consistent (a cancel seen a moment late only stops the run a moment later; the result
    is recorded by a write conditional on our claim either way)."""
    control = ports.jobs.control(job.job_id)
    return (
        control is None
        or control.cancel_requested
        or control.status is not JobStatus.RUNNING
        or control.attempts != job.attempts  # another worker took the job over
    )


def requeue(ports: WorkerPorts, job: Job, outcome: AgentOutcome, retire: str | None) -> Processed:
    """A segment ended before the invocation does: record the usage so far and give the
    job back to the queue (not a fault: its next claim adds no attempt); the function sends
    the message of its next segment. Only while our claim holds (a cancel meanwhile is
    seen by the next segment's claim: a cancelled job is not queued)."""
    try:
        requeued = ports.jobs.transition(
            Transition(
                job_id=job.job_id,
                to=JobStatus.QUEUED,
                from_=[JobStatus.RUNNING],
                set_fields={
                    "usage": outcome.usage,
                    "continuing": True,
                    "lease_until": None,
                    "segment_tool_ms": _milliseconds(outcome.longest_tool_seconds),
                },
                expected_attempts=job.attempts,
            )
        )
    except TransitionConflictError as conflict:
        current = conflict.current if isinstance(conflict.current, Job) else None
        return Processed(job.job_id, Action.SKIPPED_CONFLICT, current.status if current else None)
    except Exception as exc:  # the lease expires; the message is retried and re-claims
        raise WorkerFault(f"job {job.job_id}: its segment could not be recorded") from exc
    log.info("job %s: segment %s ended; re-queued", job.job_id, job.segments)
    return Processed(job.job_id, Action.SEGMENTED, requeued.status, retire=retire)


def _milliseconds(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def release(ports: WorkerPorts, scrubber: Scrubber, job: Job, fault: BaseException) -> bool:
    """After an infrastructure fault: give the job back to the queue, or end it when this
    was its last allowed attempt. True when the job was ended (nothing left to retry)."""
    reason = f"{type(fault).__name__}: {scrubber.text(str(fault))}"[:1000]
    log.error("job %s attempt %s hit an infrastructure fault: %s", job.job_id, job.attempts, reason)
    try:
        if job.attempts >= ports.settings.max_attempts:
            error = JobErrorInfo(
                code=ATTEMPTS_EXHAUSTED,
                message=f"failed {job.attempts} times; last: {reason}",
            )
            end_job(ports, job, JobStatus.FAILED, error=error, fields=_journaled(ports, job))
            log.warning("job %s failed: %s", job.job_id, ATTEMPTS_EXHAUSTED)
            return True
        else:
            ports.jobs.transition(
                Transition(
                    job_id=job.job_id,
                    to=JobStatus.QUEUED,
                    from_=[JobStatus.RUNNING],
                    set_fields={"lease_until": None},
                    expected_attempts=job.attempts,
                )
            )
    except (TransitionConflictError, JobNotFoundError):
        return True  # it moved on: nothing to give back, nothing to retry
    except Exception as exc:  # the lease expires on its own; redelivery re-claims then
        log.error("job %s could not be released: %s", job.job_id, type(exc).__name__)
    return False


def _journaled(ports: WorkerPorts, job: Job) -> dict[str, Any] | None:
    """The usage to record when a claimed attempt ends the job without a run's usage: what it
    journaled added (read afresh; released instead, the job keeps it for its next claim)."""
    current = ports.jobs.get(job.job_id)
    if current is None or current.attempts != job.attempts or not current.unrecorded_usd:
        return None
    return {"usage": with_unrecorded(job, current.unrecorded_usd)}

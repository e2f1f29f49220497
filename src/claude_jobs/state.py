"""The job state machine.

    queued → running → succeeded | failed | timed_out | cancelled
    queued → cancelled | failed            (cancel; dispatch failure or poison message)
    running → running                      (re-claim after the previous lease expired)
    running → queued                       (release after an infrastructure fault, for retry)
    running → awaiting_approval            (a call waits for a person: no worker is held)
    awaiting_approval → queued             (decided: the job resumes its session)
    awaiting_approval → cancelled | failed (cancel; unanswered by its approval timeout)

Every transition is a DynamoDB conditional write on the current status (the repository does
it); a terminal job never changes again.
"""

from __future__ import annotations

from .errors import TransitionConflictError
from .models import TERMINAL_STATUSES, JobStatus

S = JobStatus

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset(
        {
            S.RUNNING,
            S.QUEUED,
            S.AWAITING_APPROVAL,
            S.SUCCEEDED,
            S.FAILED,
            S.TIMED_OUT,
            S.CANCELLED,
        }
    ),
    S.AWAITING_APPROVAL: frozenset({S.QUEUED, S.CANCELLED, S.FAILED}),
    **{terminal: frozenset() for terminal in TERMINAL_STATUSES},
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def sources_for(target: JobStatus) -> tuple[JobStatus, ...]:
    """Every status a job may be in for `target` to be reached: the write's condition."""
    return tuple(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def slot_changes(source: JobStatus, target: JobStatus) -> tuple[int, int]:
    """How a transition changes its tenant's counts of (pending, running) jobs.

    Pending (queued, running or awaiting approval) drops when a job becomes terminal; running
    rises when a queued job is claimed and drops when a running job is released, ends or waits
    for approval. A re-claim
    (running → running) changes neither. Jobs are counted once, when created (pending + 1)."""
    pending = -1 if not source.is_terminal and target.is_terminal else 0
    running = 0
    if source is S.QUEUED and target is S.RUNNING:
        running = 1
    elif source is S.RUNNING and target is not S.RUNNING:
        running = -1
    return pending, running


def check_transition(current: JobStatus, target: JobStatus) -> None:
    if not can_transition(current, target):
        raise TransitionConflictError(f"a {current} job cannot become {target}", current=current)

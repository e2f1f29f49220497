"""The job state machine.

    queued → running → succeeded | failed | timed_out | cancelled
    queued → cancelled | failed            (cancel; dispatch failure or poison message)
    running → running                      (re-claim after the previous lease expired)
    running → queued                       (release after an infrastructure fault, for retry)

Every transition is a DynamoDB conditional write on the current status (the repository does
it); a terminal job never changes again.
"""

from __future__ import annotations

from .errors import TransitionConflictError
from .models import TERMINAL_STATUSES, JobStatus

S = JobStatus

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.RUNNING, S.QUEUED, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    **{terminal: frozenset() for terminal in TERMINAL_STATUSES},
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def sources_for(target: JobStatus) -> tuple[JobStatus, ...]:
    """Every status a job may be in for `target` to be reached: the write's condition."""
    return tuple(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def check_transition(current: JobStatus, target: JobStatus) -> None:
    if not can_transition(current, target):
        raise TransitionConflictError(f"a {current} job cannot become {target}", current=current)

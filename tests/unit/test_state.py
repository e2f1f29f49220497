"""The job state machine: which transitions exist, and that terminal means final."""

from __future__ import annotations

import pytest

from claude_jobs.errors import TransitionConflictError
from claude_jobs.models import TERMINAL_STATUSES, JobStatus
from claude_jobs.state import can_transition, check_transition, sources_for

S = JobStatus


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.QUEUED, S.RUNNING),
        (S.QUEUED, S.CANCELLED),
        (S.QUEUED, S.FAILED),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.TIMED_OUT),
        (S.RUNNING, S.CANCELLED),
        (S.RUNNING, S.RUNNING),
        (S.RUNNING, S.QUEUED),
    ],
)
def test_contract_transitions_are_allowed(current: JobStatus, target: JobStatus) -> None:
    assert can_transition(current, target)
    check_transition(current, target)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
@pytest.mark.parametrize("target", list(S))
def test_a_terminal_job_never_changes(terminal: JobStatus, target: JobStatus) -> None:
    assert not can_transition(terminal, target)
    with pytest.raises(TransitionConflictError) as conflict:
        check_transition(terminal, target)
    assert conflict.value.current is terminal


@pytest.mark.parametrize("target", [S.SUCCEEDED, S.TIMED_OUT])
def test_a_queued_job_cannot_finish_without_running(target: JobStatus) -> None:
    assert not can_transition(S.QUEUED, target)


def test_sources_are_the_write_conditions() -> None:
    assert set(sources_for(S.RUNNING)) == {S.QUEUED, S.RUNNING}
    assert set(sources_for(S.CANCELLED)) == {S.QUEUED, S.RUNNING, S.AWAITING_APPROVAL}
    assert set(sources_for(S.AWAITING_APPROVAL)) == {S.RUNNING}
    assert set(sources_for(S.SUCCEEDED)) == {S.RUNNING}
    assert sources_for(S.QUEUED) == (S.RUNNING, S.AWAITING_APPROVAL)


def test_a_job_waiting_for_approval_is_pending_but_not_running() -> None:
    from claude_jobs.state import slot_changes

    assert slot_changes(S.RUNNING, S.AWAITING_APPROVAL) == (0, -1)
    assert slot_changes(S.AWAITING_APPROVAL, S.QUEUED) == (0, 0)
    assert slot_changes(S.AWAITING_APPROVAL, S.CANCELLED) == (-1, 0)
    assert slot_changes(S.AWAITING_APPROVAL, S.FAILED) == (-1, 0)
    assert not can_transition(S.AWAITING_APPROVAL, S.RUNNING)
    assert not can_transition(S.QUEUED, S.AWAITING_APPROVAL)

"""Every way a jobs-queue message can be processed has one row in the worker's handling table."""

from __future__ import annotations

import pytest

from claude_jobs.worker.processed import HANDLING, Action, Handling, Processed, skipped


def test_every_action_has_a_handling() -> None:
    assert set(HANDLING) == set(Action)


@pytest.mark.parametrize("why", ["unknown", "terminal", "leased", "conflict"])
def test_each_skip_reason_is_an_action(why: str) -> None:
    assert skipped(why).value == f"skipped:{why}"


def test_only_a_leased_job_comes_back_and_only_waits_and_segments_send_a_message() -> None:
    # Given the table, then a message is kept only for a job another worker holds
    assert [a for a, h in HANDLING.items() if h is Handling.COME_BACK] == [Action.SKIPPED_LEASED]
    # And a new message is sent only for a deferred job and a long job's next segment
    assert HANDLING[Action.DEFERRED] is Handling.DEFER
    assert HANDLING[Action.SEGMENTED] is Handling.NEXT_SEGMENT
    # And everything else is done with: the message is deleted
    others = set(Action) - {Action.SKIPPED_LEASED, Action.DEFERRED, Action.SEGMENTED}
    assert {HANDLING[a] for a in others} == {Handling.DELETE}


def test_an_action_reads_as_its_value() -> None:
    processed = Processed("job-1", Action.RAN)
    assert processed.action == "ran" and f"{processed.action}" == "ran"
    assert processed.handling is Handling.DELETE

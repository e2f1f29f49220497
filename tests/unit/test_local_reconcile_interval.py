"""The local stack's reconciler interval: short enough for approval expiry, and a setting."""

from __future__ import annotations

import pytest

from claude_jobs.approval_models import MIN_APPROVAL_TIMEOUT_SECONDS
from claude_jobs_tools.local.stack_config import (
    RECONCILE_SECONDS_ENV,
    StackConfig,
    StackError,
    reconcile_interval,
)


def test_by_default_an_approval_of_the_shortest_timeout_expires_within_30_seconds() -> None:
    # Given the stack configured from an environment that names no interval
    interval = reconcile_interval(StackConfig.from_env({}))
    # Then a job that waits MIN_APPROVAL_TIMEOUT_SECONDS is swept at the latest one interval
    # after its expiry, with room left for the run itself
    assert MIN_APPROVAL_TIMEOUT_SECONDS + interval <= 20


def test_the_environment_sets_the_interval() -> None:
    config = StackConfig.from_env({RECONCILE_SECONDS_ENV: "60"})
    assert reconcile_interval(config) == 60.0
    # An explicit value in code stands when the environment names none
    assert reconcile_interval(StackConfig.from_env({}, reconcile_seconds=2.0)) == 2.0


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "7200", "nan"])
def test_a_bad_interval_is_a_clear_error(raw: str) -> None:
    config = StackConfig.from_env({RECONCILE_SECONDS_ENV: raw})
    with pytest.raises(StackError, match=RECONCILE_SECONDS_ENV):
        reconcile_interval(config)

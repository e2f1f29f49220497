"""The API functions' init phase and first invocation: nothing deferred, collector restored,
plugins off."""

from __future__ import annotations

import gc
import os

import pytest

from claude_jobs.api.boot import init_phase, paused_first_invocation


def test_the_collector_is_paused_during_init_and_restored_after() -> None:
    assert gc.isenabled()
    with init_phase():
        assert not gc.isenabled()
        assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    gc.unfreeze()


def test_a_failed_init_still_restores_the_collector() -> None:
    with pytest.raises(ImportError), init_phase():
        import claude_jobs.no_such_module  # type: ignore[import-untyped]  # noqa: F401
    assert gc.isenabled()
    gc.unfreeze()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with init_phase():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_the_first_invocation_runs_with_the_collector_paused_and_later_ones_with_it_on() -> None:
    # Given a handler that notes whether the collector runs while it does
    seen: list[bool] = []

    def handle(event: dict[str, str], context: object) -> str:
        seen.append(gc.isenabled())
        return event["answer"]

    handler = paused_first_invocation(handle)
    try:
        # When it is invoked three times
        answers = [handler({"answer": str(n)}, None) for n in range(3)]
        # Then it answered each, the collector was off for the first only, and is on after
        assert answers == ["0", "1", "2"]
        assert seen == [False, True, True]
        assert gc.isenabled()
        # and what the first invocation built was frozen with the rest
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_first_invocation_that_raises_still_restores_the_collector() -> None:
    def fail(event: object, context: object) -> None:
        raise RuntimeError("boom")

    handler = paused_first_invocation(fail)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            handler({}, None)
        assert gc.isenabled()
    finally:
        gc.unfreeze()

"""The API functions' init phase: nothing deferred, collector restored, plugins off."""

from __future__ import annotations

import gc
import os

import pytest

from claude_jobs.api.boot import init_phase


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

"""Fixtures of the integration tests that run the local stack's parts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from claude_jobs_tools.local.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The local stack's AWS emulator, started for the test (a module may define its own)."""
    started = Emulator().start()
    try:
        yield started
    finally:
        started.stop()

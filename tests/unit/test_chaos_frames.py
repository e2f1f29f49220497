"""The chaos stack finds a running job by the worker's frame names: they must exist."""

from __future__ import annotations

from claude_jobs.worker import run
from claude_jobs.worker.processor import JobProcessor
from claude_jobs_tools.local import chaos


def test_the_frames_the_chaos_stack_looks_for_are_the_workers() -> None:
    # The frame that holds a claimed job (its local `job`), and the agent run's
    assert "job" in JobProcessor._run_claimed.__code__.co_varnames
    assert JobProcessor._run_claimed.__name__ == chaos._RUN_FRAME
    assert run.run_agent.__name__ == chaos._AGENT_FRAME
    assert "/worker/" in run.run_agent.__code__.co_filename

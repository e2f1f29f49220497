"""A scripted agent runner: each run plays the next step of its script, no CLI, no model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from claude_jobs.models import JobErrorInfo, Usage
from claude_jobs.worker.agent import CANCELLED
from claude_jobs.worker.ports import AgentOutcome, AgentRequest


@dataclass
class Finish:
    """The run ends as given (default: succeeded with a text)."""

    ending: str = "succeeded"
    text: str | None = "done"
    structured: Any | None = None
    error: JobErrorInfo | None = None
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=3, output_tokens=2))

    def __call__(self, request: AgentRequest) -> AgentOutcome:
        return AgentOutcome(
            self.ending,  # type: ignore[arg-type]
            text=self.text,
            structured=self.structured,
            error=self.error,
            usage=self.usage.model_copy(),
        )


@dataclass
class RaiseFault:
    """The run fails as an infrastructure fault would (the CLI could not start, …)."""

    error: Exception

    def __call__(self, request: AgentRequest) -> AgentOutcome:
        raise self.error


@dataclass
class WaitForStop:
    """The run lasts until the worker asks it to stop (cancel), polling as the real one does."""

    poll_seconds: float = 0.01
    max_seconds: float = 10.0

    def __call__(self, request: AgentRequest) -> AgentOutcome:
        deadline = time.monotonic() + self.max_seconds
        while time.monotonic() < deadline:
            if request.should_stop():
                return AgentOutcome(
                    "cancelled",
                    error=JobErrorInfo(code=CANCELLED, message="cancelled on request"),
                )
            time.sleep(self.poll_seconds)
        raise AssertionError("the worker never asked the run to stop")


Step = Callable[[AgentRequest], AgentOutcome]


class ScriptedRunner:
    """Runs play `steps` in order; a run past the end of the script fails the test."""

    def __init__(self, *steps: Step) -> None:
        self._steps = list(steps)
        self._lock = threading.Lock()
        self.requests: list[AgentRequest] = []

    def run(self, request: AgentRequest) -> AgentOutcome:
        with self._lock:
            self.requests.append(request)
            if not self._steps:
                raise AssertionError(f"job {request.job_id}: the agent ran more than scripted")
            step = self._steps.pop(0)
        return step(request)

"""The one scripted agent and the one fake key proxy: the worker's code path without the CLI or
a model. The tests (`tests/fakes`) and the benchmarks that drive the real `JobProcessor` against
the emulator (the capacity and progress ledgers) use these same classes.

A `ScriptedRunner` plays one step of its script per run: `Finish` (the run ends as given),
`RaiseFault` (an infrastructure fault), `WaitForStop` (the run lasts until the worker asks it to
stop), `PollThenAnswer` (polls `should_stop()` as often as a run of some length would, then
answers). `FakeProxy` issues tokens, holds no key and forwards nothing.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from claude_jobs.models import JobErrorInfo, Usage
from claude_jobs.worker.agent import CANCELLED
from claude_jobs.worker.ports import AgentOutcome, AgentRequest, Journal, Metered

Step = Callable[[AgentRequest], AgentOutcome]


def _cancelled(message: str) -> AgentOutcome:
    return AgentOutcome("cancelled", error=JobErrorInfo(code=CANCELLED, message=message))


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
                return _cancelled("cancelled on request")
            time.sleep(self.poll_seconds)
        raise AssertionError("the worker never asked the run to stop")


@dataclass
class PollThenAnswer:
    """Polls `should_stop()` `polls` times without sleeping (the worker's cancel polls of a run
    of some length: what a benchmark counts), then answers what `answer(request)` returns."""

    answer: Step
    polls: int = 0

    def __call__(self, request: AgentRequest) -> AgentOutcome:
        for _ in range(self.polls):
            if request.should_stop():
                return _cancelled("cancelled")
        return self.answer(request)


class ScriptedRunner:
    """Runs play `steps` in order; a run past the end of the script fails. `then`: the step
    every run past the script plays instead (a benchmark's endless same answer)."""

    def __init__(self, *steps: Step, then: Step | None = None) -> None:
        self._steps = list(steps)
        self._then = then
        self._lock = threading.Lock()
        self.requests: list[AgentRequest] = []

    def run(self, request: AgentRequest) -> AgentOutcome:
        with self._lock:
            self.requests.append(request)
            if self._steps:
                step = self._steps.pop(0)
            elif self._then is not None:
                step = self._then
            else:
                raise AssertionError(f"job {request.job_id}: the agent ran more than scripted")
        return step(request)


class FakeProxy:
    """A key proxy that holds no key and forwards nothing: for runs by a scripted agent."""

    def __init__(self) -> None:
        self.started = False
        self.stopped = False  # set it to make the proxy "die" during a run
        self.tokens: dict[str, str] = {}  # live token → job id
        self.limits: dict[str, float | None] = {}  # token → the spending limit it was given

    def start(self) -> FakeProxy:
        self.started = True
        return self

    def close(self) -> None:
        self.started = False

    @property
    def alive(self) -> bool:
        return self.started and not self.stopped

    @property
    def url(self) -> str:
        return "http://127.0.0.1:9"

    def issue(
        self,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
        journal: Journal | None = None,
    ) -> str:
        token = "cj-job-" + secrets.token_urlsafe(8)
        self.tokens[token] = job_id
        self.limits[token] = limit_usd
        return token

    def assign(
        self,
        token: str,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
        journal: Journal | None = None,
    ) -> None:
        if token not in self.tokens:
            raise KeyError("the token is not live")
        self.tokens[token] = job_id
        self.limits[token] = limit_usd

    def metered(self, token: str) -> Metered | None:
        return None  # no calls go through this proxy

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

"""A scripted agent and a proxy that forwards nothing: the worker's code path without the CLI.

For benchmarks and tools that drive the real `JobProcessor` against the emulator (the capacity
ledger): each run answers what `answer(request)` returns, after polling `should_stop()` as often
as a run of the stated length would (the worker's cancel poll, every `cancel_poll_seconds`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

from claude_jobs.models import JobErrorInfo
from claude_jobs.worker.agent import CANCELLED, AgentOutcome, AgentRequest
from claude_jobs.worker.metering import Metered


class ScriptedAgent:
    def __init__(self, answer: Callable[[AgentRequest], AgentOutcome], *, polls: int = 0) -> None:
        self._answer = answer
        self._polls = polls
        self.requests: list[AgentRequest] = []

    def run(self, request: AgentRequest) -> AgentOutcome:
        self.requests.append(request)
        for _ in range(self._polls):
            if request.should_stop():
                return AgentOutcome(
                    "cancelled", error=JobErrorInfo(code=CANCELLED, message="cancelled")
                )
        return self._answer(request)


class NullProxy:
    """Issues tokens and meters nothing: a scripted agent makes no model calls."""

    def __init__(self) -> None:
        self._started = False

    def start(self) -> NullProxy:
        self._started = True
        return self

    def close(self) -> None:
        self._started = False

    @property
    def alive(self) -> bool:
        return self._started

    @property
    def url(self) -> str:
        return "http://127.0.0.1:9"

    def issue(
        self, job_id: str, *, limit_usd: float | None = None, models: Iterable[str] | None = None
    ) -> str:
        return "cj-job-" + secrets.token_urlsafe(8)

    def assign(
        self,
        token: str,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
    ) -> None:
        return None

    def revoke(self, token: str) -> object:
        return None

    def metered(self, token: str) -> Metered | None:
        return None

"""A key proxy that holds no key and forwards nothing: for runs by a scripted agent."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from claude_jobs.worker.metering import Metered


class FakeProxy:
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
        self, job_id: str, *, limit_usd: float | None = None, models: Iterable[str] | None = None
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
    ) -> None:
        if token not in self.tokens:
            raise KeyError("the token is not live")
        self.tokens[token] = job_id
        self.limits[token] = limit_usd

    def metered(self, token: str) -> Metered | None:
        return None  # no calls go through this proxy

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

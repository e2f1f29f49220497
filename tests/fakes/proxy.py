"""A key proxy that holds no key and forwards nothing: for runs by a scripted agent."""

from __future__ import annotations

import secrets


class FakeProxy:
    def __init__(self) -> None:
        self.started = False
        self.stopped = False  # set it to make the proxy "die" during a run
        self.tokens: dict[str, str] = {}  # live token → job id

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

    def issue(self, job_id: str) -> str:
        token = "cj-job-" + secrets.token_urlsafe(8)
        self.tokens[token] = job_id
        return token

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

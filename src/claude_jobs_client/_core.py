"""What the client's modules share: the answers' types, the errors, and small helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
#: Not terminal: the job waits for a person's decision (`pending_approval`).
AWAITING_APPROVAL = "awaiting_approval"
#: The longest `?wait=` the API honours.
MAX_WAIT_SECONDS = 20

Job = dict[str, Any]
#: A progress event (`{seq, at, type, …}`) and a page of them (`{items, next_cursor, done}`).
Event = dict[str, Any]
Page = dict[str, Any]


class ApiError(Exception):
    """The API answered 4xx/5xx. `problem` is its RFC 9457 body (or one built from the answer
    when the body was not a problem)."""

    def __init__(self, status: int, problem: Mapping[str, Any], headers: Mapping[str, str]):
        self.status = status
        self.problem = dict(problem)
        self.headers = dict(headers)
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = str(problem.get("detail") or "")
        self.request_id = problem.get("request_id")
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Per-field validation errors (`[{loc, msg}]`) of a 422."""
        return list(self.problem.get("errors") or [])


class ApiConnectionError(Exception):
    """The API could not be reached (refused, reset, timed out)."""


class WaitTimeoutError(Exception):
    """`wait` gave up before the job finished. `job` is the last state seen."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"job {job.get('job_id')} is still {job.get('status')}")


def is_terminal(job: Mapping[str, Any]) -> bool:
    return job.get("status") in TERMINAL


def is_waiting(job: Mapping[str, Any]) -> bool:
    """The job waits for a person's decision (`pending_approval` says on what)."""
    return job.get("status") == AWAITING_APPROVAL


def _problem_from(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        return body
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": response.reason_phrase or f"HTTP {response.status_code}",
        "status": response.status_code,
        "detail": response.text[:500] if body is None else str(body)[:500],
    }
    return problem


def _json_value(value: Any) -> Any:
    """An option's value as JSON: a mapping as an object, a sequence as an array."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return value


def _segment(job_id: str) -> str:
    """A job id as one path segment: it can never reach another route."""
    from urllib.parse import quote

    return quote(job_id, safe="")


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", default)), 0.0), 30.0)
    except ValueError:
        return default

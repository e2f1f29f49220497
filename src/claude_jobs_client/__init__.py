"""A small synchronous client for the claude-jobs HTTP API v1 (httpx).

    from claude_jobs_client import Client

    with Client.from_env() as api:          # CLAUDE_JOBS_URL, CLAUDE_JOBS_API_KEY
        job = api.submit("Summarise README.md", allowed_tools=["Read"])
        for event in api.iter_events(job["job_id"]):   # progress, live, until done
            print(event["type"], event)
        done = api.wait(job["job_id"])      # long-polls with ?wait=20
        print(done["status"], done["result"]["text"])

        for item in api.approvals()["items"]:  # calls waiting for a person (approvals)
            api.approve(item["job_id"], item["pending_approval"]["approval_id"])

Answers are the API's JSON bodies as plain dicts (the shapes of `openapi.json`), so a field the
server adds never breaks the client. Every 4xx/5xx raises :class:`ApiError`, which carries the
RFC 9457 problem. It needs only httpx and installs on its own (`clients/python`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Unpack

import httpx

# Names imported `as` themselves are re-exported: the package is the client's one import.
from ._approvals import Decision as Decision
from ._approvals import _Approvals
from ._core import AWAITING_APPROVAL as AWAITING_APPROVAL
from ._core import MAX_WAIT_SECONDS as MAX_WAIT_SECONDS
from ._core import TERMINAL as TERMINAL
from ._core import ApiConnectionError as ApiConnectionError
from ._core import ApiError as ApiError
from ._core import Event as Event
from ._core import Job as Job
from ._core import Page as Page
from ._core import WaitTimeoutError as WaitTimeoutError
from ._core import _json_value, _problem_from, _retry_after, _segment
from ._core import is_terminal as is_terminal
from ._core import is_waiting as is_waiting
from ._files import _artifact_target as _artifact_target
from ._files import _Files
from ._options import OPTION_NAMES
from ._options import JobOptions as JobOptions

__version__ = "0.1.0"

URL_ENV = "CLAUDE_JOBS_URL"
API_KEY_ENV = "CLAUDE_JOBS_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"

#: How many times a throttled (429) request is retried, honouring `Retry-After`.
THROTTLE_RETRIES = 4
#: Gateway answers a waiting loop asks again after (a long-poll that overran its function's
#: time, a front briefly unavailable): the same status read, idempotent.
GATEWAY_ERRORS = frozenset({502, 503, 504})
#: How many gateway answers in a row `wait` and `iter_events` ride out (pausing 1, 2, 4 s)
#: before they raise.
GATEWAY_RETRIES = 3


class Client(_Files, _Approvals):
    """One connection pool to one deployment, authenticated with one API key."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = (base_url or DEFAULT_URL).rstrip("/")
        headers = {"User-Agent": f"claude-jobs-client/{__version__}", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Client:
        env = os.environ if environ is None else environ
        return cls(env.get(URL_ENV) or DEFAULT_URL, env.get(API_KEY_ENV) or None, **kwargs)

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        timeout = httpx.Timeout(self._timeout, read=read_timeout or self._timeout)
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers, timeout=timeout
                )
            except httpx.TransportError as exc:
                raise ApiConnectionError(
                    f"cannot reach {self.base_url}: {exc or type(exc).__name__}"
                ) from exc
            if response.status_code == 429 and attempt < THROTTLE_RETRIES:
                self._sleep(_retry_after(response, default=2.0**attempt))
                continue
            if response.status_code >= 400:
                raise ApiError(response.status_code, _problem_from(response), response.headers)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------ API

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", "/v1/health").json()
        return body

    def submit(
        self,
        prompt: str,
        *,
        system_prompt: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        session_id: str | None = None,
        inputs: Sequence[str] | None = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """`POST /v1/jobs`. `options`: the job's run options (:class:`JobOptions`, generated
        by `make client-options`); None or left out: the API's defaults. Returns the 202 body
        `{job_id, status, created_at, links}`. `session_id` (an earlier job's) continues that
        conversation: ApiError 404 `session_not_found`, or 409 `session_busy` while a job of
        the session is queued or running. `inputs` are upload ids (:meth:`upload`). With an
        `idempotency_key` a gateway error (502, 503, 504: the job may have been made) is
        ridden out as :meth:`wait` does: asking again returns the job the key made, never a
        second one; without one it is raised at once."""
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(f"submit() got unknown job options: {', '.join(unknown)}")
        body: dict[str, Any] = {"prompt": prompt}
        optional: dict[str, Any] = {
            **{name: _json_value(options.get(name)) for name in OPTION_NAMES},
            "system_prompt": system_prompt,
            "metadata": dict(metadata) if metadata is not None else None,
            "session_id": session_id,
            "inputs": list(inputs) if inputs else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        earlier = 0
        while True:
            try:
                job: Job = self._request("POST", "/v1/jobs", json=body, headers=headers).json()
                return job
            except ApiError as error:
                if headers is None:
                    raise
                self._ride_out(error, earlier, None)
                earlier += 1

    def get(self, job_id: str, *, wait: float | None = None) -> Job:
        """`GET /v1/jobs/{job_id}`; with `wait` (0-20 s) the API answers as soon as the job is
        terminal or starts waiting for a decision, or `wait` seconds pass."""
        job: Job = self._get_response(job_id, wait).json()
        return job

    def _get_response(self, job_id: str, wait: float | None) -> httpx.Response:
        params = None
        read_timeout = None
        if wait is not None:
            seconds = max(0, min(int(wait), MAX_WAIT_SECONDS))
            params = {"wait": seconds}
            read_timeout = seconds + self._timeout
        return self._request(
            "GET", f"/v1/jobs/{_segment(job_id)}", params=params, read_timeout=read_timeout
        )

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[Job], None] | None = None,
        until_waiting: bool = False,
    ) -> Job:
        """Long-poll until the job is terminal; return it. Raises :class:`WaitTimeoutError`
        after `timeout` seconds (None: no limit). `on_update` sees every answer.

        A job that waits for a person's decision (`awaiting_approval`, see
        `pending_approval`) is not finished: it is waited on like a running one (its
        `on_update` sees it), unless `until_waiting`, which returns it then.

        Each request asks for the longest wait (`?wait=20`), so a job of under 20 s costs one
        status request; with `on_update` or `until_waiting` the first look does not wait (one
        more request), as a long poll answers when a job starts waiting for a decision, not
        while it waits: a job waiting already is seen at once, not after the first wait. An
        unfinished answer that came back well before the wait asked for
        (a front that cuts long-polls short) is followed by a pause of its `Retry-After`
        rather than an immediate new request. A gateway error (502, 503, 504: a long-poll
        that overran its function's time under load) is asked again after a pause, up to
        `GATEWAY_RETRIES` times in a row; any other error is raised."""
        deadline = None if timeout is None else self._clock() + timeout
        # A long poll answers when a job starts waiting, not while it waits: when the caller
        # watches (or asks for) a waiting job, the first look does not wait.
        first = until_waiting or on_update is not None
        gateway_errors = 0
        while True:
            asked_at = self._clock()
            remaining = MAX_WAIT_SECONDS if deadline is None else deadline - asked_at
            asked = 0 if first else max(0, min(MAX_WAIT_SECONDS, remaining))
            first = False
            try:
                response = self._get_response(job_id, asked)
            except ApiError as exc:
                self._ride_out(exc, gateway_errors, deadline)
                gateway_errors += 1
                continue
            gateway_errors = 0
            job: Job = response.json()
            if on_update is not None:
                on_update(job)
            if is_terminal(job) or (until_waiting and is_waiting(job)):
                return job
            if deadline is not None and self._clock() >= deadline:
                raise WaitTimeoutError(job)
            if "Retry-After" in response.headers:
                early = int(asked) - (self._clock() - asked_at)
                if early > 1:
                    pause = _retry_after(response, default=1.0)
                    if deadline is not None:
                        pause = min(pause, max(deadline - self._clock(), 0))
                    self._sleep(pause)

    def _ride_out(self, error: ApiError, earlier: int, deadline: float | None) -> None:
        """After a read that failed with `error`, the `earlier + 1`-th in a row: pause before
        asking again when it is a gateway answer (it says nothing of the job), `earlier` is
        under `GATEWAY_RETRIES` and the deadline has not passed; else raise it."""
        if error.status not in GATEWAY_ERRORS or earlier >= GATEWAY_RETRIES:
            raise error
        pause = 2.0**earlier
        if deadline is not None:
            if self._clock() >= deadline:
                raise error
            pause = min(pause, max(deadline - self._clock(), 0))
        self._sleep(pause)

    def events(self, job_id: str, *, after: str | None = None, wait: float | None = None) -> Page:
        """`GET /v1/jobs/{job_id}/events`: one page `{items, next_cursor, done}` of the job's
        progress events after the cursor `after` (a `next_cursor`; None: from the first).
        With `wait` (0-20 s) the API answers as soon as there is a newer event or the job is
        done."""
        params: dict[str, Any] = {}
        if after is not None:
            params["after"] = after
        read_timeout = None
        if wait is not None:
            params["wait"] = max(0, min(int(wait), MAX_WAIT_SECONDS))
            read_timeout = params["wait"] + self._timeout
        page: Page = self._request(
            "GET",
            f"/v1/jobs/{_segment(job_id)}/events",
            params=params or None,
            read_timeout=read_timeout,
        ).json()
        return page

    def iter_events(
        self,
        job_id: str,
        *,
        after: str | None = None,
        follow: bool = True,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """The job's progress events in order, from after `after`. With `follow`, long-polls
        for new ones until the job is done (raises :class:`WaitTimeoutError` after `timeout`
        seconds; None: no limit); without, stops at the last one stored now. A gateway error
        is asked again as by `wait`."""
        deadline = None if timeout is None else self._clock() + timeout
        cursor = after
        gateway_errors = 0
        while True:
            remaining = MAX_WAIT_SECONDS if deadline is None else deadline - self._clock()
            wait = max(0, min(MAX_WAIT_SECONDS, remaining)) if follow else None
            try:
                page = self.events(job_id, after=cursor, wait=wait)
            except ApiError as exc:
                self._ride_out(exc, gateway_errors, deadline)
                gateway_errors += 1
                continue
            gateway_errors = 0
            items = page.get("items") or []
            yield from items
            cursor = str(page.get("next_cursor") or cursor or "0")
            if page.get("done"):
                return
            if not follow and not items:
                return
            if deadline is not None and self._clock() >= deadline:
                raise WaitTimeoutError({"job_id": job_id, "status": "not done"})

    def list(self, *, limit: int | None = None, next_token: str | None = None) -> dict[str, Any]:
        """`GET /v1/jobs`: one page `{items, next_token?}`, newest first."""
        params = {k: v for k, v in (("limit", limit), ("next_token", next_token)) if v}
        page: dict[str, Any] = self._request("GET", "/v1/jobs", params=params or None).json()
        return page

    def iter_jobs(self, *, page_size: int | None = None) -> Iterator[Job]:
        """Every job of the tenant, newest first, following `next_token`."""
        token: str | None = None
        while True:
            page = self.list(limit=page_size, next_token=token)
            yield from page.get("items", [])
            token = page.get("next_token")
            if not token:
                return

    def cancel(self, job_id: str) -> Job:
        """`POST /v1/jobs/{job_id}/cancel`: a queued job (or one waiting for a decision) is
        cancelled at once, a running one within seconds. Returns the API's answer."""
        job: Job = self._request("POST", f"/v1/jobs/{_segment(job_id)}/cancel").json()
        return job

    def get_session(self, session_id: str) -> dict[str, Any]:
        """`GET /v1/sessions/{session_id}`: `{session_id, created_at, updated_at, job_ids}`."""
        session: dict[str, Any] = self._request(
            "GET", f"/v1/sessions/{_segment(session_id)}"
        ).json()
        return session

    def delete_session(self, session_id: str) -> None:
        """`DELETE /v1/sessions/{session_id}`: its transcript is removed and it can no longer
        be continued. ApiError 409 `session_busy` while a job of it is queued or running."""
        self._request("DELETE", f"/v1/sessions/{_segment(session_id)}")

    def download_result(self, job: Mapping[str, Any]) -> str | None:
        """The result text of a job: inline, or fetched from its presigned `download_url`."""
        result = job.get("result") or {}
        if result.get("text") is not None:
            return str(result["text"])
        url = result.get("download_url")
        if not url:
            return None
        try:
            # A presigned URL carries its own authorization: send no API key with it.
            response = httpx.get(url, timeout=self._timeout)
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"cannot download the result: {exc}") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _problem_from(response), response.headers)
        return response.text

"""Approvals (issue 23): a job's call that waits for a person, and the decision (mixed into
the Client)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import httpx

from ._core import Job, _segment

Decision = Literal["allow", "deny"]


class _Approvals:
    """`GET /v1/approvals` and `POST /v1/jobs/{job_id}/approvals/{approval_id}`."""

    #: The client's `_request` (the API's answers, errors raised as ApiError).
    _request: Callable[..., httpx.Response]

    def approvals(
        self, *, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        """`GET /v1/approvals`: one page `{items, next_token?}` of the tenant's jobs that wait
        for a decision, oldest first; each item `{job_id, session_id, metadata,
        pending_approval: {approval_id, tool, input, rule, requested_at, expires_at}}`."""
        params = {k: v for k, v in (("limit", limit), ("next_token", next_token)) if v}
        page: dict[str, Any] = self._request("GET", "/v1/approvals", params=params or None).json()
        return page

    def iter_approvals(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every pending approval of the tenant, oldest first, following `next_token`."""
        token: str | None = None
        while True:
            page = self.approvals(limit=page_size, next_token=token)
            yield from page.get("items", [])
            token = page.get("next_token")
            if not token:
                return

    def decide(
        self,
        job_id: str,
        approval_id: str,
        decision: Decision,
        message: str | None = None,
        answers: Mapping[str, str] | None = None,
    ) -> Job:
        """`POST /v1/jobs/{job_id}/approvals/{approval_id}`: allow or deny the call the job
        waits on; returns the job (queued again). `message` is shown to the agent with a
        denial; `answers` (question → answer) allow an `AskUserQuestion` call. ApiError 404
        (unknown, or another tenant's job), 409 (decided already, or not the job's pending
        approval), 422 (a body that does not fit the call)."""
        body: dict[str, Any] = {"decision": decision}
        if message is not None:
            body["message"] = message
        if answers is not None:
            body["answers"] = dict(answers)
        path = f"/v1/jobs/{_segment(job_id)}/approvals/{_segment(approval_id)}"
        job: Job = self._request("POST", path, json=body).json()
        return job

    def approve(
        self, job_id: str, approval_id: str, *, answers: Mapping[str, str] | None = None
    ) -> Job:
        """Allow the call (`decide(…, "allow")`)."""
        return self.decide(job_id, approval_id, "allow", answers=answers)

    def deny(self, job_id: str, approval_id: str, message: str | None = None) -> Job:
        """Deny the call; the agent sees a tool error carrying `message`."""
        return self.decide(job_id, approval_id, "deny", message=message)

"""Every error the API answers with, as an RFC 9457 problem: the one place errors meet HTTP.

`problem_for(exc)` decides the status, title and headers of any exception; `register(app)`
installs it as the resolver's only exception handler (and its not-found handler).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from ..errors import (
    ClaudeJobsError,
    DispatchError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyReplayError,
    JobNotFoundError,
    PayloadTooLargeError,
    RequestValidationError,
    ServiceUnavailableError,
    SessionBusyError,
    SessionNotFoundError,
    TenantLimitError,
    TransitionConflictError,
    UnauthorizedError,
)
from ..service.approvals import ApprovalConflictError
from .resolver import NotFoundError, Resolver, Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:claude-jobs:problem:"

#: AWS error codes that mean "slow down": answered as 429 with Retry-After.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)


@dataclass(frozen=True)
class Problem:
    status: int
    code: str
    title: str
    detail: str
    errors: Sequence[FieldError] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.code

    def body(self, request_id: str, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body["request_id"] = request_id
        if self.errors:
            body["errors"] = [{"loc": list(e.loc), "msg": e.msg} for e in self.errors]
        return body


#: Domain error → (status, title). Subclasses inherit their base's entry.
_STATUS: dict[type[ClaudeJobsError], tuple[int, str]] = {
    UnauthorizedError: (401, "Unauthorized"),
    JobNotFoundError: (404, "Not Found"),
    SessionNotFoundError: (404, "Not Found"),
    SessionBusyError: (409, "Conflict"),
    IdempotencyConflictError: (409, "Conflict"),
    IdempotencyReplayError: (409, "Conflict"),
    TransitionConflictError: (409, "Conflict"),
    ApprovalConflictError: (409, "Conflict"),
    PayloadTooLargeError: (413, "Content Too Large"),
    RequestValidationError: (422, "Unprocessable Content"),
    TenantLimitError: (429, "Too Many Requests"),
    DispatchError: (503, "Service Unavailable"),
    ServiceUnavailableError: (503, "Service Unavailable"),
}

_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": 'Bearer realm="claude-jobs"'},
    429: {"Retry-After": "1"},
    503: {"Retry-After": "1"},
}


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> Problem:
    """A problem for `status` with its standard title and headers (e.g. 429's Retry-After)."""
    phrase = HTTPStatus(status).phrase
    return Problem(
        status=status,
        code=code or phrase.lower().replace(" ", "_").replace("-", "_"),
        title=phrase,
        detail=detail,
        errors=errors,
        headers={**_HEADERS.get(status, {}), **(headers or {})},
    )


def problem_for(exc: BaseException) -> Problem:
    """The problem that answers `exc`. Anything unexpected is a 500 that reveals nothing."""
    if isinstance(exc, ClaudeJobsError):
        for cls in type(exc).__mro__:
            if cls in _STATUS:
                status, title = _STATUS[cls]
                errors = exc.errors if isinstance(exc, RequestValidationError) else ()
                headers = dict(_HEADERS.get(status, {}))
                if isinstance(exc, (TenantLimitError, ServiceUnavailableError)):
                    headers["Retry-After"] = str(exc.retry_after_seconds)
                return Problem(
                    status=status,
                    code=exc.code,
                    title=title,
                    detail=exc.detail,
                    errors=errors,
                    headers=headers,
                )
    code = _aws_error_code(exc)
    if code in THROTTLING_CODES:
        return problem(429, "Too many requests right now; retry after a second.", code="throttled")
    if code == "ValidationException" and "item size" in str(exc).lower():
        # A body within 256 KiB whose stored form DynamoDB finds over 400 KB (pathological
        # shapes, e.g. a huge list of tiny numbers): the caller's doing, so not a 5xx.
        return problem(413, "The request is too large to store.", code="payload_too_large")
    return problem(500, "The service failed to answer; the error was logged.", code="internal")


def _aws_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def render(
    prob: Problem, request_id: str, instance: str | None = None
) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of a problem answer."""
    headers = {"Content-Type": PROBLEM_CONTENT_TYPE, **prob.headers}
    return prob.status, headers, json.dumps(prob.body(request_id, instance), separators=(",", ":"))


def response(prob: Problem, request_id: str, instance: str | None = None) -> Response:
    status, headers, body = render(prob, request_id, instance)
    return Response(
        status_code=status, content_type=PROBLEM_CONTENT_TYPE, body=body, headers=headers
    )


def register(app: Resolver) -> None:
    """Install the mapping as `app`'s exception and not-found handlers."""
    from ..observability import get_logger

    def context() -> tuple[str, str | None]:
        event = app.current_event
        request_context = event.raw_event.get("requestContext") or {}
        return str(request_context.get("requestId") or "unknown"), event.path

    def _no_route(exc: NotFoundError) -> Response:
        request_id, path = context()
        return response(problem(404, "No such resource.", code="not_found"), request_id, path)

    def _any(exc: Exception) -> Response:
        request_id, path = context()
        prob = problem_for(exc)
        if prob.status >= 500:
            get_logger().exception("request failed", extra={"status": prob.status})
        else:
            get_logger().info(
                "request refused", extra={"status": prob.status, "problem": prob.code}
            )
        return response(prob, request_id, path)

    # Registered by call, as with Powertools' untyped decorator before.
    app.exception_handler(NotFoundError)(_no_route)
    app.exception_handler(Exception)(_any)

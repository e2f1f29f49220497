"""The API's request router: API Gateway REST proxy events to the operations of
:mod:`.routes`, and their answers back to proxy responses.

It does what the API used of Powertools' `APIGatewayRestResolver`, answering alike (the same
route matching, trailing slashes, exception handlers looked up along the exception's MRO, the
REST proxy response with `multiValueHeaders`) without importing Powertools' `event_handler`
package, whose `__init__` loads every resolver Powertools has (AppSync and with it all of
asyncio, Bedrock agents, VPC Lattice, ...) and the event classes of every AWS event source. From
source (the layer ships no bytecode) that was about a third of what a function imported beyond
boto3 (issue 28); `tests/unit/test_cold_start_imports.py` checks it stays out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

# A path parameter matches what Powertools' resolver matched: RFC 3986's safe and unsafe
# characters and word characters, never a slash.
_SAFE_URI = "-._~()'!*:@,;=+&$"
_UNSAFE_URI = r"%<> \[\]{}|^"
_PARAMETER = re.compile(r"<(\w+)>")
_SEGMENT = rf"(?P<\1>[{_SAFE_URI}{_UNSAFE_URI}\\w]+)"  # a re.sub template

Handler = TypeVar("Handler", bound=Callable[..., Any])


class NotFoundError(Exception):
    """No route answers the request's method and path (handled like any exception)."""


@dataclass
class Response:
    """An answer: status, body and headers (one value each)."""

    status_code: int
    content_type: str | None = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def proxy(self) -> dict[str, Any]:
        """The REST proxy integration's response."""
        headers = dict(self.headers)
        if self.content_type and "Content-Type" not in headers:
            headers["Content-Type"] = self.content_type
        return {
            "statusCode": self.status_code,
            "body": self.body,
            "isBase64Encoded": False,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
        }


class Request:
    """The event being answered."""

    def __init__(self, raw_event: Mapping[str, Any]) -> None:
        self.raw_event = raw_event

    @property
    def path(self) -> str:
        path = self.raw_event.get("path")
        return path if isinstance(path, str) else ""

    @property
    def http_method(self) -> str:
        method = self.raw_event.get("httpMethod")
        return method.upper() if isinstance(method, str) else ""


@dataclass(frozen=True)
class _Route:
    method: str
    rule: re.Pattern[str]
    operation: Callable[..., Response]


class Resolver:
    """Routes registered with :meth:`route`, exception handlers with :meth:`exception_handler`;
    :meth:`resolve` answers one event (its `current_event` meanwhile)."""

    def __init__(self) -> None:
        self._static: list[_Route] = []
        self._dynamic: list[_Route] = []
        self._handlers: dict[type[BaseException], Callable[[Any], Response]] = {}
        self.current_event = Request({})

    def route(self, path: str, method: str) -> Callable[[Handler], Handler]:
        """Register an operation for `method` on `path` (`/v1/jobs/<job_id>`)."""
        path = path.rstrip("/")
        rule = re.compile(f"^{_PARAMETER.sub(_SEGMENT, path)}/*$")

        def register(operation: Handler) -> Handler:
            routes = self._dynamic if _PARAMETER.search(path) else self._static
            routes.append(_Route(method.upper(), rule, operation))
            return operation

        return register

    def exception_handler(
        self, exc_type: type[BaseException]
    ) -> Callable[[Callable[[Any], Response]], Callable[[Any], Response]]:
        def register(handler: Callable[[Any], Response]) -> Callable[[Any], Response]:
            self._handlers[exc_type] = handler
            return handler

        return register

    def resolve(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        self.current_event = request = Request(event)
        try:
            response = self._answer(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = handler(exc)
        return response.proxy()

    def _answer(self, request: Request) -> Response:
        method, path = request.http_method, request.path
        for route in self._static + self._dynamic:
            if route.method != method:
                continue
            found = route.rule.match(path)
            if found:
                return route.operation(**found.groupdict())
        raise NotFoundError(f"{method} {path}")

    def _handler_for(self, exc: BaseException) -> Callable[[Any], Response] | None:
        for cls in type(exc).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        return None

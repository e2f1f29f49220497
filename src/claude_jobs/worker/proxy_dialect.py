"""What the key proxy forwards and how, per model provider: a `Dialect`.

A dialect says which requests are forwarded (`route`), how a refusal looks (`render`), how a
request is authorized upstream (`upstream_headers`) and how its answer is metered (`reader`).
`AnthropicDialect` is the Messages API's: `POST /v1/messages` and `/v1/messages/count_tokens`
only, the path in normal form and sent upstream as the allowlist's own string, the key as
`x-api-key`. `bedrock.BedrockDialect` is Amazon Bedrock's.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Any, Protocol

from ..observability import deferred_logger
from . import forwarding
from .usage_reader import UsageReader

log = deferred_logger()  # Powertools' structured logger

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {
    "host",
    "content-length",
    "x-api-key",
    "authorization",
    "accept-encoding",
}

#: The only paths forwarded (with POST); the value is what is sent upstream.
ALLOWED_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
#: The paths whose answers carry usage that costs money.
METERED_PATHS = frozenset({"/v1/messages"})
MAX_QUERY_CHARS = 256

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_QUERY = re.compile(r"[A-Za-z0-9_.~=&+,-]*")


@dataclass(frozen=True)
class Refusal:
    """An answer the proxy gives itself; `kind` is the Messages API's error type, which a
    dialect renders in its provider's error shape."""

    status: int
    kind: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Forward:
    """A request the proxy forwards: `path` (and `query`) as sent upstream, after the
    upstream URL's own path; whether its answer is metered; the model it names, if the path
    does (otherwise the request body's `model` is used for pricing)."""

    path: str
    query: str = ""
    metered: bool = False
    model: str = ""


class UpstreamAuthError(Exception):
    """The worker cannot authorize a request upstream (no key, no credentials)."""


class Dialect(Protocol):
    """What a model provider's proxy forwards, and how."""

    def presented_token(self, headers: Message) -> str | None:
        """The job token a request carries."""
        ...

    def route(self, method: str, target: str) -> Forward | Refusal:
        """The request to forward for a request line, or why it is refused."""
        ...

    def render(self, refusal: Refusal) -> tuple[int, list[tuple[str, str]], bytes]:
        """A refusal as status, headers and body, in the provider's error shape."""
        ...

    def upstream_headers(
        self, incoming: Message, forward: Forward, body: bytes, url: str, host: str
    ) -> dict[str, str]:
        """The headers sent upstream for `body` to `url` (authorization included); raises
        `UpstreamAuthError` when the worker has nothing to authorize it with."""
        ...

    def reader(
        self, forward: Forward, body: bytes, response: http.client.HTTPResponse, charge: Any
    ) -> UsageReader | None:
        """What meters a successful answer of a metered request."""
        ...

    def admit(
        self,
        incoming: Message,
        forward: Forward,
        payload: dict[str, Any],
        job_models: frozenset[str] | None,
    ) -> str:
        """The model a request's call is priced at, once the request is on the forwarding
        allowlist (`forwarding`); raises `forwarding.Refused` otherwise."""
        ...


class AnthropicDialect:
    """The Messages API: `POST /v1/messages` and `/v1/messages/count_tokens`, the key as
    `x-api-key`, server-sent events. `models`: the deployment's models, which every job may
    name besides its own (None: any model, for tests of the proxy alone)."""

    def __init__(self, key: Callable[[], str], models: Iterable[str] | None = None) -> None:
        self._key = key
        self.models = frozenset(models) if models is not None else None

    def admit(
        self,
        incoming: Message,
        forward: Forward,
        payload: dict[str, Any],
        job_models: frozenset[str] | None,
    ) -> str:
        forwarding.check_request(payload)
        forwarding.check_betas(
            forwarding.header_betas(", ".join(incoming.get_all("anthropic-beta") or []))
        )
        allowed = None if self.models is None else self.models | (job_models or frozenset())
        return forwarding.check_model(payload.get("model"), allowed)

    def presented_token(self, headers: Message) -> str | None:
        token = headers.get("x-api-key")
        if token:
            return str(token)
        auth = str(headers.get("authorization", ""))
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def route(self, method: str, target: str) -> Forward | Refusal:
        routed = route(method, target)
        if isinstance(routed, Refusal):
            return routed
        path, query = routed
        return Forward(path, query, metered=path in METERED_PATHS)

    def render(self, refusal: Refusal) -> tuple[int, list[tuple[str, str]], bytes]:
        body = _error_body(refusal.kind, refusal.message)
        return refusal.status, [("content-type", "application/json")], body

    def upstream_headers(
        self, incoming: Message, forward: Forward, body: bytes, url: str, host: str
    ) -> dict[str, str]:
        try:
            key = self._key()
        except Exception as exc:  # the job is failing for an infrastructure reason
            log.error("the proxy has no key: %s", type(exc).__name__)
            raise UpstreamAuthError("the worker could not read its API key") from None
        headers = {
            name: value
            for name, value in incoming.items()
            if name.lower() not in _DROPPED_REQUEST_HEADERS and forwarding.header_forwarded(name)
        }
        headers["x-api-key"] = key
        headers["host"] = host
        headers["content-length"] = str(len(body))
        headers["accept-encoding"] = "identity"  # an answer the meter can read
        return headers

    def reader(
        self, forward: Forward, body: bytes, response: http.client.HTTPResponse, charge: Any
    ) -> UsageReader | None:
        return UsageReader(
            streaming=(response.getheader("content-type") or "")
            .lower()
            .startswith("text/event-stream"),
            model=forward.model or _requested_model(body),
            charge=charge,
            content_encoding=response.getheader("content-encoding") or "",
        )


def route(method: str, target: str) -> tuple[str, str] | Refusal:
    """The (path, query) to forward for a request line, or why it is refused."""
    allowed = "only POST /v1/messages and POST /v1/messages/count_tokens are forwarded"
    if not target.startswith("/") or "#" in target:
        return Refusal(400, "invalid_request_error", "the request target must be a plain path")
    path, _, query = target.partition("?")
    segments = path.split("/")[1:]
    if any(segment in (".", "..") or not _SEGMENT.fullmatch(segment) for segment in segments):
        return Refusal(
            400,
            "invalid_request_error",
            "the request path is not in normal form (empty, dot or encoded segments)",
        )
    if path not in ALLOWED_PATHS:
        return Refusal(404, "not_found_error", f"{path} is not available here: {allowed}")
    if method != "POST":
        return Refusal(
            405, "invalid_request_error", f"{method} {path}: {allowed}", (("allow", "POST"),)
        )
    if len(query) > MAX_QUERY_CHARS or not _QUERY.fullmatch(query):
        return Refusal(400, "invalid_request_error", "the query string is not allowed")
    return path, query


def _error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def _requested_model(body: bytes) -> str:
    """The model a Messages request names (for an answer that does not name its own)."""
    if len(body) > 1024 * 1024:
        return ""  # priced as an unknown model, unless the answer names it
    try:
        payload = json.loads(body)
    except ValueError:
        return ""
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) else ""

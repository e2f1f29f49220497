"""The key-injecting loopback proxy between the CLI and the Messages API.

The CLI is started with `ANTHROPIC_BASE_URL` pointing here and `ANTHROPIC_API_KEY` set to a
per-job token. For each request that carries a live token (as `x-api-key` or a bearer
`Authorization`), the proxy swaps the token for the real key, forwards the request to the
upstream (`ANTHROPIC_BASE_URL` of the deployment, the public API by default) and streams the
answer back unchanged, byte for byte (server-sent events included).

What is forwarded, exactly (everything else gets an Anthropic-shaped error and never reaches
the upstream):

- `POST /v1/messages` and `POST /v1/messages/count_tokens`, with an optional query string
  (`?beta=true`, which the CLI sends) of plain characters. The path must already be in normal
  form: no empty, `.` or `..` segment, no percent-encoding, no backslash, no `;` parameters —
  otherwise 400. Another path → 404, another method on these paths → 405. The path sent
  upstream is the allowlist's own string, never the client's bytes.
- A request target that is not a path (absolute-form `http://…`, `*`) or carries a fragment
  → 400. A body over `MAX_BODY_BYTES` (32 MiB, the Messages API's own request limit) → 413,
  refused on its `Content-Length` before any of it is read (a chunked body, as soon as it grows
  past the cap); `Content-Length` together with `Transfer-Encoding` → 400.
- No live token → 401. The agent's `Accept-Encoding` is replaced by `identity`, so that the
  meter can read every answer.

Metering and budgets: each token has a `JobMeter`. The usage in every relayed answer of
`/v1/messages` (streamed or not) is read from a copy as it passes (`metering.UsageReader`),
priced with `pricing`, and added to the job's meter. A token is issued with the job's limit
(min of its `max_budget_usd` and the deployment cap); once the metered cost reaches it, every
further call gets 402 `billing_error` — which the CLI does not retry — and the call that
crossed the limit is the last one forwarded. At most `MAX_CALLS_IN_FLIGHT` calls of one job
are forwarded at once (429 `rate_limit_error` beyond), so parallel calls cannot outrun the
meter by more than that many answers.

One proxy serves every job of the process; tokens are issued per job and revoked when it ends.

What differs between model providers is a `Dialect`: which requests are forwarded, how a refusal
looks, how the request is authorized upstream and how its answer is metered. `AnthropicDialect`
(this module) is the Messages API's: the key as `x-api-key`. `bedrock.BedrockDialect` is Amazon
Bedrock's: model invocation only, each request signed with the worker role's credentials.
Everything else (tokens, framing and body limits, budgets, calls in flight, the relay) is the
same for both.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import json
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..observability import deferred_logger
from . import forwarding
from .forwarding import Refused
from .metering import MAX_JSON_BYTES, Call, JobMeter, Metered, UsageReader

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
_DROPPED_RESPONSE_HEADERS = HOP_BY_HOP | {"content-length"}

#: Seconds the upstream may stay silent (connect, or between two reads of a stream).
UPSTREAM_TIMEOUT_SECONDS = 600
#: The only paths forwarded (with POST); the value is what is sent upstream.
ALLOWED_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
#: The paths whose answers carry usage that costs money.
METERED_PATHS = frozenset({"/v1/messages"})
#: The largest request body forwarded: the Messages API's own limit (32 MB).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Calls of one job forwarded at the same time.
MAX_CALLS_IN_FLIGHT = 8
MAX_QUERY_CHARS = 256
#: A plain (not streamed) metered answer up to this size is relayed once it is complete.
MAX_HELD_BYTES = MAX_JSON_BYTES

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


class _BodyTooLarge(Exception):
    pass


class _BadFraming(Exception):
    pass


class KeyInjectingProxy:
    def __init__(
        self,
        upstream: str,
        key: Callable[[], str] | None = None,
        *,
        dialect: Dialect | None = None,
        host: str = "127.0.0.1",
        timeout: float = UPSTREAM_TIMEOUT_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_calls_in_flight: int = MAX_CALLS_IN_FLIGHT,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) upstream URL: {upstream!r}")
        self._scheme = parts.scheme
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port
        self._upstream_prefix = parts.path.rstrip("/")
        if dialect is None:
            if key is None:
                raise ValueError("the Anthropic dialect needs a key")
            dialect = AnthropicDialect(key)
        self.dialect = dialect
        self._timeout = timeout
        self._host = host
        self.max_body_bytes = max_body_bytes
        self._max_in_flight = max_calls_in_flight
        self._tokens: dict[str, JobMeter] = {}  # token → the job's meter
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.forwarded = 0  # requests forwarded upstream, all jobs

    # ------------------------------------------------------------ lifecycle

    def start(self) -> KeyInjectingProxy:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            if self._server is not None:
                self._server.server_close()
            self._server = _Server((self._host, 0), _handler_for(self))
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="claude-jobs-key-proxy",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            if thread is not None and thread.is_alive():
                server.shutdown()
            server.server_close()

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------ tokens

    def issue(
        self,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
    ) -> str:
        """A fresh token for one job, valid until revoked. Once the job's metered cost reaches
        `limit_usd`, its calls are refused. `models`: the job's own model(s), which its calls
        may name besides the deployment's."""
        token = "cj-job-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self._meter(job_id, limit_usd, models)
        return token

    def assign(
        self,
        token: str,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
    ) -> None:
        """Bind a token issued ahead of its job (a warm start's, issued with a limit of 0: it
        could spend nothing meanwhile) to `job_id`, with a fresh meter and the job's limit."""
        with self._lock:
            if token not in self._tokens:
                raise KeyError("the token is not live")
            previous = self._tokens[token]
            self._tokens[token] = self._meter(job_id, limit_usd, models)
        previous.close()

    def _meter(
        self, job_id: str, limit_usd: float | None, models: Iterable[str] | None
    ) -> JobMeter:
        job_models = frozenset(m for m in models or () if m)
        return JobMeter(job_id, limit_usd, self._max_in_flight, job_models)

    def revoke(self, token: str) -> Metered | None:
        """End a token; returns the job's final meter: its calls still open (an answer still
        read after its caller went away) are charged their reservation and cut off."""
        with self._lock:
            meter = self._tokens.pop(token, None)
        return meter.close() if meter is not None else None

    def metered(self, token: str) -> Metered | None:
        """The job's usage and cost metered so far (None for an unknown token)."""
        with self._lock:
            meter = self._tokens.get(token)
        return meter.snapshot() if meter is not None else None

    def meter_for(self, presented: str | None) -> JobMeter | None:
        if not presented:
            return None
        with self._lock:
            items = list(self._tokens.items())
        found = None
        for token, meter in items:  # constant-time comparison with every live token
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = meter
        return found

    # ------------------------------------------------------------ forwarding

    def _connection(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                self._upstream_host,
                self._upstream_port,
                timeout=self._timeout,
                context=self._ssl,
            )
        return http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=self._timeout
        )

    def _upstream_host_header(self) -> str:
        default = 443 if self._scheme == "https" else 80
        port = self._upstream_port
        return self._upstream_host if port in (None, default) else f"{self._upstream_host}:{port}"

    def _upstream_url(self, target: str) -> str:
        return f"{self._scheme}://{self._upstream_host_header()}{target}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def _error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def _handler_for(proxy: KeyInjectingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "claude-jobs-proxy"

        def log_message(self, format: str, *args: Any) -> None:
            return  # requests are not logged: their bodies are the job's data

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """http.server's own refusals (malformed request line, unknown method, oversized
            headers), in the API's error shape."""
            refusal = Refusal(code, "invalid_request_error", message or "malformed request")
            self._refuse(refusal, drain=False)  # the request itself could not be read

        def _refuse(self, refusal: Refusal, *, drain: bool = True) -> None:
            """Answer without forwarding, and close the connection. A body within the cap is
            read first (and dropped): closing a socket with unread input makes the kernel send
            a reset, which can destroy the answer before the client reads it."""
            self.close_connection = True
            if drain:
                with contextlib.suppress(_BadFraming, _BodyTooLarge, OSError):
                    self._read_body(self._body_length())
            status, headers, body = proxy.dialect.render(refusal)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.send_header("connection", "close")
            for name, value in refusal.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body_length(self) -> int | None:
            """The announced body length (None: chunked), refusing bad or oversized framing."""
            encoding = self.headers.get("transfer-encoding")
            length = self.headers.get("content-length")
            if encoding is not None:
                if length is not None or encoding.strip().lower() != "chunked":
                    raise _BadFraming("unsupported body framing")
                return None
            if length is None:
                return 0
            if not length.strip().isdigit():
                raise _BadFraming("invalid content-length")
            if int(length) > proxy.max_body_bytes:
                raise _BodyTooLarge()
            return int(length)

        def _read_body(self, length: int | None) -> bytes:
            if length is not None:
                return self.rfile.read(length) if length else b""
            # Chunked: a body that grows past the cap is refused; its rest is read and dropped
            # (up to the cap again, so that the answer is not lost to a reset), then the
            # connection is closed.
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024).split(b";")[0].strip()
                try:
                    size = int(line or b"0", 16)
                except ValueError:
                    raise _BadFraming("invalid chunk size") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    if total > proxy.max_body_bytes:
                        raise _BodyTooLarge()
                    return b"".join(parts)
                total += size
                if total > 2 * proxy.max_body_bytes:
                    raise _BodyTooLarge()
                data = self.rfile.read(size)
                if total <= proxy.max_body_bytes:
                    parts.append(data)
                else:
                    parts.clear()
                self.rfile.readline(1024)

        def _raw_target(self) -> str:
            """The request-target as sent: `self.path` has had a leading `//` collapsed by
            http.server already."""
            words = self.requestline.split()
            return words[1] if len(words) == 3 else ""

        def _handle(self) -> None:
            meter = proxy.meter_for(proxy.dialect.presented_token(self.headers))
            if meter is None:
                self._refuse(Refusal(401, "authentication_error", "invalid or expired job token"))
                return
            forward = proxy.dialect.route(self.command, self._raw_target())
            if isinstance(forward, Refusal):
                self._refuse(forward)
                return
            try:
                length = self._body_length()
            except _BadFraming as exc:
                self._refuse(Refusal(400, "invalid_request_error", str(exc)), drain=False)
                return
            except _BodyTooLarge:
                self._refuse(_too_large(), drain=False)  # refused before it is read
                return
            why_not = meter.admit()
            if why_not == "budget":
                self._refuse(_budget_spent(meter))
                return
            if why_not == "busy":
                self._refuse(
                    Refusal(
                        429,
                        "rate_limit_error",
                        "too many calls of this job at once",
                        (("retry-after", "1"),),
                    )
                )
                return
            try:
                try:
                    body = self._read_body(length)
                except _BadFraming as exc:
                    self._refuse(Refusal(400, "invalid_request_error", str(exc)), drain=False)
                    return
                except _BodyTooLarge:
                    self._refuse(_too_large(), drain=False)
                    return
                self._admit(meter, forward, body)
            finally:
                meter.release()

        def _admit(self, meter: JobMeter, forward: Forward, body: bytes) -> None:
            """The allowlist (`forwarding`), then the budget's share: a metered call reserves
            its worst case, its `max_tokens` lowered to what the budget can pay for."""
            try:
                payload = forwarding.parse(body)
                model = proxy.dialect.admit(self.headers, forward, payload, meter.models)
                if not forward.metered:
                    self._forward(meter, forward, body, None)
                    return
                requested = forwarding.requested_max_tokens(payload)
            except Refused as exc:
                self._refuse(Refusal(400, "invalid_request_error", str(exc)), drain=False)
                return
            estimate = forwarding.input_tokens_estimate(body, payload)
            input_usd, per_token = forwarding.call_prices(model, estimate)
            grant = meter.reserve(
                input_usd=input_usd,
                output_usd_per_token=per_token,
                max_tokens=requested,
                floor=forwarding.floor_tokens(payload),
            )
            if grant == "budget":
                self._refuse(_budget_spent(meter), drain=False)
                return
            if isinstance(grant, str):
                self._refuse(
                    Refusal(
                        429,
                        "rate_limit_error",
                        "what is left of this job's budget is held by its calls in progress",
                        (("retry-after", "1"),),
                    ),
                    drain=False,
                )
                return
            try:
                body = forwarding.fit_max_tokens(body, payload, grant.max_tokens)
                routed = Forward(forward.path, forward.query, forward.metered, model)
                self._forward(meter, routed, body, grant.call)
            finally:
                grant.call.settle()

        def _forward(
            self, meter: JobMeter, forward: Forward, body: bytes, call: Call | None
        ) -> None:
            query = forward.query
            target = proxy._upstream_prefix + forward.path + (f"?{query}" if query else "")
            try:
                headers = proxy.dialect.upstream_headers(
                    self.headers,
                    forward,
                    body,
                    proxy._upstream_url(target),
                    proxy._upstream_host_header(),
                )
            except UpstreamAuthError as exc:  # the job is failing for an infrastructure reason
                self._refuse(Refusal(503, "api_error", str(exc)), drain=False)  # body read
                return
            connection = proxy._connection()
            try:
                try:
                    connection.request("POST", target, body=body, headers=headers)
                    upstream = connection.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    log.warning("upstream unreachable: %s", type(exc).__name__)
                    self._refuse(
                        Refusal(502, "api_error", f"upstream unreachable ({type(exc).__name__})"),
                        drain=False,
                    )
                    return
                proxy.forwarded += 1
                meter.forwarded()
                reader = None
                if forward.metered and 200 <= upstream.status < 300:
                    charge = call.charge if call is not None else meter.charge
                    reader = proxy.dialect.reader(forward, body, upstream, charge)
                    if reader is not None and call is not None:
                        reader.on_shown(call.shown)
                if call is not None:  # the job's end cuts an answer still being read
                    call.on_cut(lambda: _cut(connection))
                try:
                    self._relay(upstream, reader, call.settle if call is not None else None)
                finally:
                    if reader is not None:
                        reader.finish()  # no-op if the relay finished it
            finally:
                connection.close()

        def _relay(
            self,
            upstream: http.client.HTTPResponse,
            reader: UsageReader | None,
            settled: Callable[[], None] | None = None,
        ) -> None:
            """Relay the answer as it comes. Each piece is fed to the meter before it is
            written, so the client never sees usage that is not charged yet; a plain JSON
            answer (small: one message) is held back until it is complete and charged.
            `settled` is called once the whole answer is read and charged, before its last
            bytes go out: a client's next call, made as soon as it has this answer, finds
            this call's reservation given back.

            A metered answer is read to its end even when the client goes away: hanging up
            does not stop the model (nor its bill), so the meter reads on until the upstream
            ends it, or the job ends (then the call is charged its reservation and cut)."""
            length = upstream.getheader("content-length")
            chunked = length is None
            self._client_gone = False
            with contextlib.suppress(OSError):
                self.send_response_only(upstream.status, upstream.reason)
                for name, value in upstream.getheaders():
                    if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                        self.send_header(name, value)
                if chunked:
                    self.send_header("transfer-encoding", "chunked")
                else:
                    self.send_header("content-length", length or "0")
                self._send(self.end_headers)
            held: bytearray | None = (
                bytearray() if reader is not None and not reader.streaming else None
            )
            while True:
                if reader is None and self._client_gone:
                    break  # nothing to meter: no reason to read on
                try:
                    data = upstream.read1(65536)
                except (OSError, http.client.HTTPException):
                    # The upstream broke off mid-answer (or the job's end cut it): end ours
                    # without the final chunk, so the client sees a truncated stream.
                    if held:
                        self._write(bytes(held), chunked)
                    self.close_connection = True
                    return
                if not data:
                    break
                if reader is not None:
                    reader.feed(data)  # a copy: what is relayed is `data`, unchanged
                if held is not None and len(held) + len(data) <= MAX_HELD_BYTES:
                    held += data
                    continue
                if held:
                    self._write(bytes(held), chunked)
                held = None
                self._write(data, chunked)
            if reader is not None:
                reader.finish()
            if settled is not None:
                settled()
            if held:
                self._write(bytes(held), chunked)
            if chunked:
                self._send(lambda: self.wfile.write(b"0\r\n\r\n"))
                self._send(self.wfile.flush)
            if self._client_gone:
                self.close_connection = True

        def _send(self, write: Callable[[], Any]) -> None:
            """Write to the client unless it has gone away (stopped, killed, or hung up)."""
            if self._client_gone:
                return
            try:
                write()
            except (TimeoutError, OSError):
                self._client_gone = True
                self.close_connection = True

        def _write(self, data: bytes, chunked: bool) -> None:
            if chunked:
                self._send(lambda: self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n"))
            else:
                self._send(lambda: self.wfile.write(data))
            self._send(self.wfile.flush)

        do_POST = _handle
        do_GET = _handle
        do_PUT = _handle
        do_DELETE = _handle
        do_PATCH = _handle
        do_HEAD = _handle
        do_OPTIONS = _handle

    return Handler


def _budget_spent(meter: JobMeter) -> Refusal:
    limit = meter.snapshot().limit_usd or 0.0
    return Refusal(
        402,
        "billing_error",
        f"this job's budget of ${limit:.4f} is spent (metered by the worker); "
        "no further Messages API calls are allowed",
    )


def _cut(connection: http.client.HTTPConnection) -> None:
    """End an upstream answer being read (its job has ended): the reading thread sees the
    connection fail and settles."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _too_large() -> Refusal:
    return Refusal(
        413, "request_too_large", f"the request body is over {MAX_BODY_BYTES // 2**20} MiB"
    )


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

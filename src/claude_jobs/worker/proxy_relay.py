"""One request through the key proxy: the token, the route, the body's framing and size, the
job's budget and calls in flight, the forwarding allowlist, then the upstream call and the
streaming relay of its answer, metered as it passes (`KeyInjectingProxy` serves it).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ..observability import deferred_logger
from . import forwarding
from .forwarding import Refused
from .metering import Call, JobMeter
from .proxy_dialect import HOP_BY_HOP, Forward, Refusal, UpstreamAuthError
from .usage_reader import MAX_JSON_BYTES, UsageReader

if TYPE_CHECKING:
    from .proxy import KeyInjectingProxy

log = deferred_logger()  # Powertools' structured logger

_DROPPED_RESPONSE_HEADERS = HOP_BY_HOP | {"content-length"}

#: The largest request body forwarded: the Messages API's own limit (32 MB).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: A plain (not streamed) metered answer up to this size is relayed once it is complete.
MAX_HELD_BYTES = MAX_JSON_BYTES


class _BodyTooLarge(Exception):
    pass


class _BadFraming(Exception):
    pass


def handler_for(proxy: KeyInjectingProxy) -> type[BaseHTTPRequestHandler]:
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
            if grant == "unrecorded":  # not forwarded: what it could cost is not on record
                self._refuse(
                    Refusal(
                        503,
                        "api_error",
                        "this job's spending could not be recorded; try again",
                        (("retry-after", "2"),),
                    ),
                    drain=False,
                )
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
                    # Kept here: http.client drops the socket from the connection as soon as
                    # an answer says it will close (`Connection: close`, HTTP/1.0), and the
                    # job's end must still be able to cut that answer.
                    upstream_sock = connection.sock
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
                    call.on_cut(lambda: _cut(upstream_sock))
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


def _cut(sock: socket.socket | None) -> None:
    """End an upstream answer being read (its job has ended): the reading thread sees the
    connection fail and settles."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _too_large() -> Refusal:
    return Refusal(
        413, "request_too_large", f"the request body is over {MAX_BODY_BYTES // 2**20} MiB"
    )

"""HTTP/1.1 keep-alive for the local stack's WSGI servers (the AWS emulator, the HTTP front).

werkzeug's development server ends every connection after one answer (`Connection: close`,
then it waits up to 10 ms for stray request bytes): each AWS call of a local function opened a
TCP connection, started a server thread and closed both again — about a third of the CPU of a
small call such as a long-poll's control read. AWS keeps connections open, and botocore and
httpx reuse them. `KeepAlive` answers a request whose body length is known with a
`Content-Length` and leaves the connection open for the client's next request; anything else
(a chunked request body) is answered the werkzeug way, and its connection closed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import WSGIRequestHandler

log = logging.getLogger(__name__)

#: An idle kept-alive connection is closed after this long (its server thread ends).
IDLE_SECONDS = 120
_NO_BODY = frozenset({204, 304})


@dataclass(frozen=True)
class Answer:
    """What a WSGI application answered, whole."""

    status: str  # "200 OK"
    headers: list[tuple[str, str]]
    body: bytes
    raised: bool = False  # the application raised: this is the 500 answered for it

    @property
    def code(self) -> int:
        return int(self.status.partition(" ")[0])


SERVER_ERROR = Answer(
    "500 Internal Server Error", [("Content-Type", "text/plain")], b"Internal Server Error", True
)


def answer_of(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Answer:
    """Run `app` on `environ` and collect its answer; an application that raised is logged
    and answers 500 (the emulator's servers, over HTTP and in process alike)."""
    answered: dict[str, Any] = {}
    out: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answered["status"], answered["headers"] = status, headers
        return out.append

    try:
        chunks = app(environ, start_response)
        try:
            out.extend(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()
        return Answer(str(answered["status"]), list(answered["headers"]), b"".join(out))
    except Exception:
        log.exception(
            "the %s request to %s raised", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        )
        return SERVER_ERROR


class _Body:
    """The request body, `length` bytes of `stream` at most; what the app leaves unread is
    read by `drain` so that the next request on the connection starts where it should."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._left = length

    def read(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        if size is None or size < 0 or size > self._left:
            size = self._left
        data: bytes = self._stream.read(size)
        self._left -= len(data)
        if not data:
            self._left = 0
        return data

    def readline(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        if size is None or size < 0 or size > self._left:
            size = self._left
        data: bytes = self._stream.readline(size)
        self._left -= len(data)
        if not data:
            self._left = 0
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def drain(self) -> None:
        while self._left > 0 and self.read(65536):
            pass


class KeepAlive(WSGIRequestHandler):
    """A werkzeug request handler that keeps HTTP/1.1 connections open (mix it in first)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    def setup(self) -> None:
        super().setup()
        # Answers go out whole (one write each), at once: no Nagle delay on a reused connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run_wsgi(self) -> None:
        length = self.headers.get("Content-Length")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower() or (
            length is not None and not length.strip().isdigit()
        ):
            self.close_connection = True
            super().run_wsgi()  # answered, and the connection closed, the werkzeug way
            return
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _Body(self.rfile, int(length or 0))
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = body
        answer = answer_of(self.server.app, environ)
        if not answer.raised:
            try:
                body.drain()
            except Exception:
                log.exception("the %s request to %s could not be read", self.command, self.path)
                answer = SERVER_ERROR
        if answer.raised:
            self.close_connection = True
        code, reason = answer.code, answer.status.partition(" ")[2]
        self.send_response(code, reason)
        names = set()
        for name, value in answer.headers:
            self.send_header(name, value)
            names.add(name.lower())
        silent = self.command == "HEAD" or 100 <= code < 200 or code in _NO_BODY
        if "content-length" not in names and not silent:
            self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # The head and the body in one write: written apart, the body of a kept-alive
        # connection waits for the client's delayed ACK of the head (Nagle: ~40 ms a call).
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        head = b"".join(buffered) + b"\r\n"
        buffered.clear()
        self.wfile.write(head if silent else head + answer.body)
        self.wfile.flush()

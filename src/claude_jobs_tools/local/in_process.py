"""The local stack's own AWS calls, served by the emulator without a socket.

The stack's functions run in the emulator's process, so each of their calls used to cross
loopback twice: botocore's HTTP client wrote the request and parsed the answer's headers, and
the emulator's HTTP server parsed the request into a WSGI environ and wrote the answer back.
That was ~0.4 ms of CPU a call, a third of what a `GetItem` cost, and a job makes ~40 calls.

:func:`serve` hands the calls of this process's botocore clients whose endpoint is the
emulator's URL straight to its WSGI application (botocore's `before-send` event, the hook
`moto`'s own in-memory mock answers through). Everything after the socket is as before:
the request is the one botocore signed, so :func:`~.emulator_auth.require_stack_key` and moto's
IAM check see the same headers and body, DynamoDB is served under the same lock, and the answer
goes through botocore's parsers, retries and error handling as an HTTP answer does. Other
processes (a job's agent, the command line, a fault proxy) still reach the emulator over HTTP,
and a client pointed elsewhere is not touched.

A call is served on a thread of the emulator's, not on the caller's: as over HTTP, a caller
that dies mid-call (the local stack kills an invocation by raising in its thread) stops
waiting, while the emulator finishes what it began, so a transaction is never left half
applied by the death of its caller.
"""

from __future__ import annotations

import io
import sys
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlsplit

from .emulator_auth import WSGIApp
from .keep_alive import Answer, answer_of

__all__ = ["InProcessServer", "serve", "stop"]

#: Threads a served emulator may run calls on at once (made as needed; idle ones are reused).
#: Long polls hold one each (SQS `ReceiveMessage` up to 20 s), so it is well above the calls
#: a stack makes at once.
MAX_CALLS = 256

_served: dict[str, InProcessServer] = {}
_lock = threading.Lock()
_installed = False


class InProcessServer:
    """An emulator's WSGI application, answering botocore requests made to `url`."""

    def __init__(self, url: str, app: WSGIApp) -> None:
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ValueError(f"{url!r} is not an http://host:port URL")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._host, self._port = parts.hostname, parts.port
        self._app = app
        self._pool = ThreadPoolExecutor(MAX_CALLS, thread_name_prefix="aws-emulator-call")
        self._count_lock = threading.Lock()
        self._answered = 0

    def answer(self, request: Any) -> Any:
        """The emulator's answer to botocore's prepared `request`, as botocore's HTTP client
        would have returned it."""
        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders
        from botocore.exceptions import EndpointConnectionError
        from moto.core.botocore_stubber import MockRawResponse

        environ = self._environ(request)
        try:
            answer = self._pool.submit(self._call, environ).result()
        except (RuntimeError, CancelledError):  # stopped meanwhile: as a server that is gone
            raise EndpointConnectionError(endpoint_url=request.url) from None
        headers = HTTPHeaders()
        for name, value in answer.headers:
            headers[name] = value
        return AWSResponse(request.url, answer.code, headers, MockRawResponse(answer.body))

    @property
    def calls(self) -> int:
        """How many calls it has answered."""
        return self._answered

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, environ: dict[str, Any]) -> Answer:
        answer = answer_of(self._app, environ)  # a 500 when the emulator raised, as over HTTP
        with self._count_lock:
            self._answered += 1
        return answer

    def _environ(self, request: Any) -> dict[str, Any]:
        parts = urlsplit(request.url)
        body = _body_bytes(request.body)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(parts.path, "latin-1"),  # as a WSGI server decodes it
            "QUERY_STRING": parts.query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "SERVER_NAME": self._host,
            "SERVER_PORT": str(self._port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": parts.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers.items():
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = text
            elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):  # the body is whole here
                environ[f"HTTP_{key}"] = text
        environ.setdefault("HTTP_HOST", parts.netloc)
        return environ


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):  # a file or stream: botocore rewinds it itself before a retry
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return b"".join(bytes(chunk) for chunk in body)  # an iterable of chunks


def serve(url: str, app: WSGIApp) -> InProcessServer:
    """Answer this process's botocore calls to `url` with `app`, until the returned server is
    stopped with :func:`stop`. Clients of sessions made from now on are served (botocore adds
    its built-in handlers to each new session)."""
    server = InProcessServer(url, app)
    with _lock:
        _install()
        _served[server.origin] = server
    return server


def stop(server: InProcessServer) -> None:
    """Calls to the server's URL go over HTTP again (to whatever listens there by then)."""
    with _lock:
        if _served.get(server.origin) is server:
            del _served[server.origin]
    server.close()


def _install() -> None:
    global _installed
    if _installed:
        return
    from botocore import handlers

    handlers.BUILTIN_HANDLERS.append(("before-send", _before_send))
    _installed = True


def _before_send(request: Any, **_: Any) -> Any:
    """botocore's `before-send`: an answer for a served emulator's request, None otherwise
    (botocore then sends it over HTTP)."""
    if not _served:
        return None
    parts = urlsplit(request.url)
    server = _served.get(f"{parts.scheme}://{parts.netloc}")
    return server.answer(request) if server is not None else None

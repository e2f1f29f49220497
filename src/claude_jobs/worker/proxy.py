"""The key-injecting loopback proxy between the CLI and the Messages API.

The CLI is started with `ANTHROPIC_BASE_URL` pointing here and `ANTHROPIC_API_KEY` set to a
per-job token. For each request that carries a live token (as `x-api-key` or a bearer
`Authorization`), the proxy swaps the token for the real key, forwards the request to the
upstream (`ANTHROPIC_BASE_URL` of the deployment, the public API by default) and streams the
answer back unchanged, byte for byte (server-sent events included). Requests without a live
token get a 401 and never reach the upstream. Only `/v1/…` paths are forwarded.

One proxy serves every job of the process; tokens are issued per job and revoked when it ends.
"""

from __future__ import annotations

import hmac
import http.client
import json
import secrets
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ..observability import deferred_logger

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
_DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {"host", "content-length", "x-api-key", "authorization"}
_DROPPED_RESPONSE_HEADERS = HOP_BY_HOP | {"content-length"}

#: Seconds the upstream may stay silent (connect, or between two reads of a stream).
UPSTREAM_TIMEOUT_SECONDS = 600


class KeyInjectingProxy:
    def __init__(
        self,
        upstream: str,
        key: Callable[[], str],
        *,
        host: str = "127.0.0.1",
        timeout: float = UPSTREAM_TIMEOUT_SECONDS,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) upstream URL: {upstream!r}")
        self._scheme = parts.scheme
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port
        self._upstream_prefix = parts.path.rstrip("/")
        self._key = key
        self._timeout = timeout
        self._host = host
        self._tokens: dict[str, str] = {}  # token → job id
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

    def issue(self, job_id: str) -> str:
        """A fresh token for one job; valid until revoked."""
        token = "cj-job-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = job_id
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def job_for(self, presented: str | None) -> str | None:
        if not presented:
            return None
        with self._lock:
            items = list(self._tokens.items())
        found = None
        for token, job_id in items:  # constant-time comparison with every live token
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = job_id
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

        def _reply(self, status: int, kind: str, message: str) -> None:
            body = _error_body(kind, message)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(parts)
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def _presented_token(self) -> str | None:
            token = self.headers.get("x-api-key")
            if token:
                return token
            auth = self.headers.get("authorization", "")
            return auth[7:].strip() if auth.lower().startswith("bearer ") else None

        def _forward(self) -> None:
            body = self._read_body()
            job_id = proxy.job_for(self._presented_token())
            if job_id is None:
                self._reply(401, "authentication_error", "invalid or expired job token")
                return
            if not self.path.startswith("/v1/"):
                self._reply(404, "not_found_error", "only /v1/ paths are forwarded")
                return
            try:
                key = proxy._key()
            except Exception as exc:  # the job is failing for an infrastructure reason
                log.error("the proxy has no key: %s", type(exc).__name__)
                self._reply(503, "api_error", "the worker could not read its API key")
                return
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in _DROPPED_REQUEST_HEADERS
            }
            headers["x-api-key"] = key
            headers["host"] = proxy._upstream_host_header()
            headers["content-length"] = str(len(body))
            connection = proxy._connection()
            try:
                try:
                    connection.request(
                        self.command,
                        proxy._upstream_prefix + self.path,
                        body=body if body or self.command == "POST" else None,
                        headers=headers,
                    )
                    upstream = connection.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    log.warning("upstream unreachable: %s", type(exc).__name__)
                    self._reply(502, "api_error", f"upstream unreachable ({type(exc).__name__})")
                    return
                proxy.forwarded += 1
                self._relay(upstream)
            finally:
                connection.close()

        def _relay(self, upstream: http.client.HTTPResponse) -> None:
            length = upstream.getheader("content-length")
            chunked = length is None
            self.send_response_only(upstream.status, upstream.reason)
            for name, value in upstream.getheaders():
                if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                    self.send_header(name, value)
            if chunked:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("content-length", length or "0")
            self.end_headers()
            try:
                while True:
                    try:
                        data = upstream.read1(65536)
                    except (OSError, http.client.HTTPException):
                        # The upstream broke off mid-answer: end ours without the final chunk,
                        # so the client sees a truncated stream rather than a complete one.
                        self.close_connection = True
                        return
                    if not data:
                        break
                    if chunked:
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    else:
                        self.wfile.write(data)
                    self.wfile.flush()
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the CLI went away (stopped, or killed)

        do_POST = _forward
        do_GET = _forward
        do_PUT = _forward
        do_DELETE = _forward
        do_PATCH = _forward

    return Handler

"""The loopback MCP broker: a job's remote MCP servers, reached by its CLI without their
credentials (shared/DESIGN.md, "MCP servers and credentials"; docs/security.md).

The CLI is configured (`cli_config`) with one streamable-HTTP server per job server, at
`http://127.0.0.1:<port>/mcp/<name>`, carrying the job's token as a bearer `Authorization`.
For a request with a live token on a path of one of that job's servers, the broker:

- forwards it to exactly that server's configured URL (never a URL from the request), with
  `Authorization: Bearer <value>` of the job's vault entry when the server names one, and only
  the MCP headers the protocol needs (`accept`, `content-type`, `mcp-session-id`,
  `mcp-protocol-version`, `last-event-id`): the agent's own `Authorization` never goes on;
- lets through only what `mcp_rpc` allows (the job's own tools; nothing else of the server);
- streams the answer back (server-sent events as they come), keeping only the MCP response
  headers; redirects are not followed and no `Location` or `WWW-Authenticate` is relayed.

Limits: a request body of at most `MAX_REQUEST_BYTES`, refused on its `Content-Length` before
it is read (no chunked bodies); an answer of at most `MAX_ANSWER_BYTES` (cut there); the
server may stay silent at most `UPSTREAM_TIMEOUT_SECONDS` (connect, or between reads);
`MAX_CALLS_IN_FLIGHT` requests of one job at once (429 beyond). A job's registration is its
token's: it is made once the job's credentials are read (`open_job`) and ends with the run
(`close_job`), which also cuts the job's requests still in flight: a credential is used only
while its job runs, and only for its own tenant's job (the worker reads the vault with the
job's tenant).
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from .loopback import LoopbackServer

#: The largest request body forwarded.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: The largest answer relayed; a longer one is cut there.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: Seconds a server may stay silent (connect, or between two reads of an answer).
UPSTREAM_TIMEOUT_SECONDS = 300
#: Requests of one job forwarded at the same time.
MAX_CALLS_IN_FLIGHT = 8
#: The path prefix of the broker's endpoints: `/mcp/<name>`.
PATH_PREFIX = "/mcp/"


@dataclass(frozen=True)
class BrokeredServer:
    """One of a job's MCP servers as the broker knows it: where it forwards, with what."""

    name: str
    url: str
    #: The vault entry's value, sent as a bearer token (None: no credential).
    credential: str | None = field(default=None, repr=False)
    #: The server's tools the job may call (their names on the server).
    tools: frozenset[str] = frozenset()


class JobServers:
    """A job's registration: its servers by name, its requests in flight."""

    def __init__(self, servers: Mapping[str, BrokeredServer], max_in_flight: int) -> None:
        self.servers = dict(servers)
        self._max = max_in_flight
        self._lock = threading.Lock()
        #: The upstream sockets of its requests in flight (the socket, not the connection:
        #: http.client drops a connection's socket once an answer says it will close).
        self._open: set[socket.socket] = set()
        self.closed = False
        self.forwarded = 0

    def admit(self, upstream: socket.socket) -> bool:
        with self._lock:
            if self.closed or len(self._open) >= self._max:
                return False
            self._open.add(upstream)
            self.forwarded += 1
            return True

    def release(self, upstream: socket.socket) -> None:
        with self._lock:
            self._open.discard(upstream)

    def close(self) -> None:
        """The job has ended: its requests in flight are cut."""
        with self._lock:
            self.closed = True
            cut = list(self._open)
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class McpBroker(LoopbackServer):
    thread_name = "claude-jobs-mcp-broker"
    what = "the MCP broker"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        timeout: float = UPSTREAM_TIMEOUT_SECONDS,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_calls_in_flight: int = MAX_CALLS_IN_FLIGHT,
    ) -> None:
        super().__init__(host)
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        self.max_answer_bytes = max_answer_bytes
        self._max_in_flight = max_calls_in_flight
        self._jobs: dict[str, JobServers] = {}  # token → the job's servers
        self._ssl = ssl.create_default_context()

    # ------------------------------------------------------------ lifecycle (LoopbackServer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        from .mcp_relay import handler_for

        return handler_for(self)

    def close(self) -> None:
        """Stop serving; every job's registration is closed (its calls in flight cut)."""
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job.close()
        super().close()

    # ------------------------------------------------------------ jobs

    def open_job(self, token: str, servers: list[BrokeredServer]) -> None:
        """Register a job's servers under its token (until `close_job`)."""
        for server in servers:
            parts = urlsplit(server.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"MCP server {server.name!r}: not an http(s) URL")
        job = JobServers({s.name: s for s in servers}, self._max_in_flight)
        with self._lock:
            previous = self._jobs.pop(token, None)
            self._jobs[token] = job
        if previous is not None:
            previous.close()

    def close_job(self, token: str) -> int:
        """End a job's registration and cut its requests in flight; returns how many requests
        it forwarded."""
        with self._lock:
            job = self._jobs.pop(token, None)
        if job is None:
            return 0
        job.close()
        return job.forwarded

    def job_for(self, presented: str | None) -> JobServers | None:
        if not presented:
            return None
        with self._lock:
            items = list(self._jobs.items())
        found = None
        for token, job in items:  # constant-time comparison with every live token
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = job
        return found

    def cli_config(self, token: str, names: list[str]) -> dict[str, Any]:
        """The SDK's `mcp_servers` for a job: each server at the broker, with the job token."""
        return {
            name: {
                "type": "http",
                "url": f"{self.url}{PATH_PREFIX}{name}",
                "headers": {"Authorization": f"Bearer {token}"},
            }
            for name in names
        }

    # ------------------------------------------------------------ upstream

    def connection(self, url: str) -> tuple[http.client.HTTPConnection, str, str]:
        """A connection to a server's URL, the request target and the Host header for it."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self._ssl
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = 443 if parts.scheme == "https" else 80
        host_header = host if port in (None, default) else f"{host}:{port}"
        if ":" in host and not host.startswith("["):  # an IPv6 literal
            host_header = f"[{host}]" if port in (None, default) else f"[{host}]:{port}"
        return connection, target, host_header

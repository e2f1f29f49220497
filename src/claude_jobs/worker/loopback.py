"""A threaded HTTP server on a loopback port of the worker: the one lifecycle of the key proxy
(`proxy.py`), the MCP broker (`mcp_broker.py`) and the Git broker (`git_broker.py`).

Each holds what the agent must not (a key, a vault value, a Git credential) and serves the
agent's CLI on `127.0.0.1:<ephemeral port>` with per-job tokens; this base starts it on a
daemon thread (again, if that thread died), names its URL and stops it.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server (daemon threads, a backlog for concurrent callers) on which a
    client that hung up before its request was read or its answer written (a CLI stopped
    mid-request, a git client stopped, a hostile agent's probe) is no error of the server:
    nothing is printed for it. The worker's loopback servers and the local stand-ins use it."""

    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """Start, stop and locate one loopback HTTP server; subclasses give its request handler."""

    #: The serving thread's name (seen in thread dumps and tests).
    thread_name = "claude-jobs-loopback"
    #: What `url` says when the server is not started.
    what = "the loopback server"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._lock = threading.Lock()
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        """Serve (idempotent; a server whose thread died is replaced on a new port)."""
        handler = self._handler()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            if self._server is not None:
                self._server.server_close()
            self._server = QuietHTTPServer((self._host, 0), handler)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=self.thread_name,
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
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
        server = self._server
        if server is None:
            raise RuntimeError(f"{self.what} is not started")
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}"

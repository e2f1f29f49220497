"""HTTP servers on a free loopback port, served from a background thread for a test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from socketserver import BaseServer

from claude_jobs.worker.loopback import QuietHTTPServer


class BackgroundServer:
    """Serves `server` from a daemon thread until `close()`."""

    def __init__(self, server: BaseServer) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[index]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_server(handler: type[BaseHTTPRequestHandler]) -> BackgroundServer:
    """A threading HTTP server on 127.0.0.1:<free> for `handler`, not yet started."""
    return BackgroundServer(QuietHTTPServer(("127.0.0.1", 0), handler))


@contextmanager
def serving(server: BaseServer) -> Iterator[BackgroundServer]:
    """`server` served in the background for the block; its base URL as `.url`."""
    with BackgroundServer(server) as running:
        yield running

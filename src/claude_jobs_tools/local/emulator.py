"""The embedded AWS emulator: a moto server on loopback, with DynamoDB made atomic.

moto's DynamoDB is not safe under concurrent requests: a failed transaction puts back a copy of
the whole table taken before it (reverting writes other threads made meanwhile), and stream
sequence numbers can repeat. Real DynamoDB has neither problem, and the local stack writes from
many threads (API requests, workers, notifier), so DynamoDB and DynamoDB Streams requests are
served one at a time. Every other service stays concurrent (SQS long polls must not block).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

_SERIALIZED_TARGETS = ("DynamoDB_", "DynamoDBStreams_")


def serialize_dynamodb(app: WSGIApp) -> WSGIApp:
    """`app`, with DynamoDB (and Streams) requests handled under one lock."""
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(_SERIALIZED_TARGETS):
            return app(environ, start_response)
        with lock:
            # Drain the answer inside the lock: moto may build it lazily.
            return list(app(environ, start_response))

    return wrapped


class Emulator:
    """A moto server on `host`, on a free port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Emulator:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        # The emulator logs every call through werkzeug's logger: keep it for warnings.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = serialize_dynamodb(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._host, 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="aws-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

"""The embedded AWS emulator: a moto server on loopback that serves only the stack's own key,
with DynamoDB made atomic.

Any local process can find a loopback port, a job's agent (a tenant's Bash) included, and the
emulated account holds the developer's Anthropic key, the webhook master key and every tenant's
jobs. So the emulator serves only requests signed with a random access key it issues at start to
the stack (an IAM user allowed everything: it is the stack itself):

- moto's IAM authentication is on (`INITIAL_NO_AUTH_ACTION_COUNT` = 0 while an emulator runs;
  moto reads that setting on every request, process-wide). The stack's user and key are made
  in the IAM backend directly, so no request is ever served unauthenticated. moto then checks
  every header signature, and each action against the user's policy.
- In front of moto, :func:`require_stack_key` refuses with 403, before moto sees it, every
  request that is not signed with the stack's access key id — unsigned ones, foreign keys, the
  SDKs' default `testing` — and moto's own unauthenticated `/moto-api` (a dump of all data,
  reset, switching authentication off). It verifies presigned S3 URLs (query-string SigV4,
  which moto cannot check when authentication is on) itself, and hands them on as header-signed
  requests, so the results' `download_url` keeps working.

The key lives in this process only (its environment, for the functions' boto3 clients): never
in a file. The agent's environment is an allowlist without `AWS_*`, the worker process is made
non-dumpable, and in the root layout the agent runs as another user.

moto's DynamoDB is not safe under concurrent requests: a failed transaction puts back a copy of
the whole table taken before it (reverting writes other threads made meanwhile), and stream
sequence numbers can repeat. Real DynamoDB has neither problem, and the local stack writes from
many threads (API requests, workers, notifier), so DynamoDB and DynamoDB Streams requests are
served one at a time. Every other service stays concurrent (SQS long polls must not block).
"""

from __future__ import annotations

import copy
import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .emulator_auth import (
    ALLOW_EVERYTHING,
    REGION,
    Refused,
    StackCredentials,
    WSGIApp,
    iam_authentication,
    issue_stack_key,
    require_stack_key,
)

#: Re-exported: the emulator's authentication moved to emulator_auth.
__all__ = [
    "ALLOW_EVERYTHING",
    "REGION",
    "Emulator",
    "Refused",
    "StackCredentials",
    "WSGIApp",
    "bound_shard_iterators",
    "direct_handlers",
    "known_actions",
    "plain_answers",
    "require_stack_key",
    "serialize_dynamodb",
    "share_stream_records",
]

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


#: The JSON-protocol services (their `X-Amz-Target` prefix) whose requests `direct_handlers`
#: hands to moto's handler itself: all that the stack calls but S3. Each answers at `/` only.
DIRECT_TARGETS = {
    "DynamoDB_20120810.": ("moto.dynamodb.responses", "DynamoHandler"),
    "DynamoDBStreams_20120810.": ("moto.dynamodbstreams.responses", "DynamoDBStreamsHandler"),
    "AmazonSQS.": ("moto.sqs.responses", "SQSResponse"),
    "AWSEvents.": ("moto.events.responses", "EventsHandler"),
}


def direct_handlers(app: WSGIApp) -> WSGIApp:
    """`app` (moto's server), with DynamoDB, Streams, SQS and EventBridge requests handed to
    the service's moto handler.

    moto's server finds the service of a request, then its Flask application routes it, builds
    a request object, calls the service's handler, and builds a response object of its answer:
    ~0.4 ms of the ~1.5 ms a `GetItem` cost the emulator, for one route (these services answer
    at `/` only). This does what that Flask view does (`moto.core.utils.
    convert_to_flask_response`) without the routing: the same request class, the same handler
    call, a `ClientError` as a 400, the answer as a Flask response with the header moto's CORS
    extension adds. Any other request (S3, another path or method) goes to `app`."""
    from botocore.exceptions import ClientError
    from flask import Response
    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import BackendRequest
    from moto.settings import DISABLE_GLOBAL_CORS

    handlers = [
        (prefix, getattr(importlib.import_module(module), name))
        for prefix, (module, name) in DIRECT_TARGETS.items()
    ]
    # moto's server sends every answer with this header (flask-cors, for browser clients)
    cors = {} if DISABLE_GLOBAL_CORS else {"Access-Control-Allow-Origin": "*"}

    def handler_of(environ: dict[str, Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/":
            return None
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        for prefix, handler in handlers:
            if target.startswith(prefix):
                return handler
        return None

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        handler = handler_of(environ)
        if handler is None:
            return app(environ, start_response)
        request = BackendRequest(environ)
        recorder._record_request(request)  # (as moto's view records it)
        try:
            status, headers, body = handler.dispatch(
                request, request.raw_url, dict(request.headers)
            )
        except ClientError as exc:
            status, headers, body = 400, {}, exc.response["Error"]["Message"]
        response = Response(response=body, status=status, headers={**headers, **cors})
        answer: Iterable[bytes] = response(environ, start_response)
        return answer

    return wrapped


def share_stream_records() -> None:
    """Make moto's transactions cost what the table holds, not what its stream ever held.

    moto backs up every table a TransactWriteItems touches with a deep copy (put back if the
    transaction fails), stream included: each transaction copied every stream record the table
    ever had, so a local stack slowed down with every job it ran (quadratically) and its memory
    grew by gigabytes over a few hundred jobs. A stream record never changes once written, so
    the backup now shares the records and copies only their list: a failed transaction still
    gets back the stream as it was before it, without the records it added."""
    from moto.dynamodb.models.table import StreamShard

    def shard_copy(shard: Any, memo: dict[int, Any]) -> Any:
        copied = copy.copy(shard)
        memo[id(shard)] = copied
        copied.table = memo.get(id(shard.table), shard.table)
        copied.items = list(shard.items)
        return copied

    setattr(StreamShard, "__deepcopy__", shard_copy)  # noqa: B010 - moto's class, patched


#: Shard iterators the emulator keeps (AWS's expire after 15 minutes; moto's never did).
MAX_SHARD_ITERATORS = 1000


def bound_shard_iterators() -> None:
    """Keep only the newest MAX_SHARD_ITERATORS shard iterators. moto kept every one it ever
    issued (two a poll, so four a second with the notifier's poller), each holding its shard and
    through it the table as it was: after a failed transaction that is a whole superseded copy
    of the table, kept for the rest of the stack's life."""
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator

    def bounded(method: Callable[..., Any], owner: Callable[[Any], Any]) -> Callable[..., Any]:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            answer = method(self, *args, **kwargs)
            iterators = owner(self).shard_iterators
            while len(iterators) > MAX_SHARD_ITERATORS:
                iterators.pop(next(iter(iterators)))
            return answer

        wrapped.bounded = True  # type: ignore[attr-defined]
        return wrapped

    if getattr(ShardIterator.get, "bounded", False):
        return
    patches = {
        ShardIterator: ("get", lambda it: it.streams_backend),
        DynamoDBStreamsBackend: ("get_shard_iterator", lambda backend: backend),
    }
    for cls, (name, owner) in patches.items():
        setattr(cls, name, bounded(getattr(cls, name), owner))


#: moto answers the emulator writes as the JSON they already are (see `plain_answers`).
PLAIN_ANSWERS = (
    ("moto.dynamodbstreams.responses", "DynamoDBStreamsHandler", "get_records"),
    ("moto.dynamodb.responses", "DynamoHandler", "get_item"),
    ("moto.dynamodb.responses", "DynamoHandler", "query"),
)


def plain_answers() -> None:
    """Serve the stream's `GetRecords` and DynamoDB's `GetItem` and `Query` as the JSON they
    already are.

    moto keeps items and stream records in the service's wire shape (attribute values typed as
    `{"S": …}`, numbers and sequence numbers as strings), but its generic response serializer
    walks every attribute of every image against the API's shapes. On the local stack that was
    ~15 ms of the emulator's CPU a `GetRecords` (the notifier and the expiry function both read
    the stream, each record with its old and new job item), ~28 ms a job, ~1 ms a `GetItem`
    and ~0.3 ms a `Query` (a caller following a job's events makes ~12): most of the
    emulator's serializing. These answers are now the same JSON written directly, with the
    values the JSON protocol encodes (a stream record's `ApproximateCreationDateTime` as epoch
    seconds, binary attribute values as base64); an answer holding anything else that is not
    plain JSON goes through moto's serializer as before. (A map with an empty key, which the
    generic serializer mangled so that botocore could not parse the answer, now comes back
    intact.)"""
    import importlib

    for module, owner, name in PLAIN_ANSWERS:
        cls = getattr(importlib.import_module(module), owner)
        method = getattr(cls, name)
        if not getattr(method, "plain", False):
            setattr(cls, name, _plain(method))


def _plain(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    import base64
    import json
    from datetime import UTC, datetime

    from moto.core.responses import ActionResult

    def wire(value: object) -> object:
        if isinstance(value, datetime):  # JSON protocol timestamps: epoch seconds
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, bytes):  # a binary attribute's value (`B`, `BS`): base64
            return base64.b64encode(value).decode("ascii")
        raise TypeError(f"{type(value).__name__} is not plain JSON")

    def answer(self: Any) -> Any:
        result = method(self)
        if not isinstance(result, ActionResult):
            return result
        try:
            return json.dumps(result.result, default=wire, separators=(",", ":"))
        except (TypeError, ValueError):
            return result  # moto's serializer, as before

    answer.plain = True  # type: ignore[attr-defined]
    return answer


def known_actions() -> None:
    """List each moto service's actions once, not on every request: moto finds the method of
    an action among the names of its response class's functions, which it listed anew (with
    `inspect.getmembers`, every attribute of the class) for each request it served."""
    import functools

    from moto.core import responses

    names = getattr(responses, "method_names_from_class")  # noqa: B009 - not re-exported
    if not hasattr(names, "cache_info"):
        setattr(responses, "method_names_from_class", functools.cache(names))  # noqa: B010


def _remembering_hosts(dispatcher: type) -> type:
    """moto's dispatcher, remembering which backend serves a host: moto matches every request's
    host against the URL patterns of all its backends (and lists its modules) each time."""

    class RememberingDispatcher(dispatcher):  # type: ignore[misc]
        _known: dict[str | None, Any]

        def get_backend_for_host(self, host: str | None) -> Any:
            known = self.__dict__.setdefault("_known", {})
            if host not in known:
                known[host] = super().get_backend_for_host(host)
            return known[host]

    return RememberingDispatcher


class Emulator:
    """A moto server on `host`, on a free port, serving only `credentials`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._credentials: StackCredentials | None = None
        self._authenticating = False

    @property
    def credentials(self) -> StackCredentials:
        """The only access key the emulator serves (held by the stack's processes alone)."""
        if self._credentials is None:
            raise RuntimeError("the emulator is not started")
        return self._credentials

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def app(self) -> WSGIApp:
        """The WSGI application the server runs (authentication included)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        app: WSGIApp = self._server.app
        return app

    def start(self) -> Emulator:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        from . import dynamodb_expressions, dynamodb_queries, dynamodb_transactions
        from .keep_alive import KeepAlive

        # Transactions back up the items they name, not whole tables (see that module).
        dynamodb_transactions.install()
        # A table's query reads the items of its key, not the whole table (see that module).
        dynamodb_queries.install()
        # An update expression is parsed once and its tree copied cheaply (see that module).
        dynamodb_expressions.install()
        known_actions()
        # The emulator logs every call through werkzeug's logger: keep it for warnings.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        share_stream_records()
        bound_shard_iterators()
        plain_answers()
        # Authentication is on before the server listens: no request is served without it.
        iam_authentication.acquire()
        self._authenticating = True
        try:
            self._credentials = issue_stack_key()
            app = require_stack_key(
                serialize_dynamodb(
                    direct_handlers(
                        _remembering_hosts(DomainDispatcherApplication)(create_backend_app)
                    )
                ),
                self._credentials,
            )
            # Connections stay open between calls, as AWS keeps them (keep_alive.py).
            handler = type("EmulatorRequestHandler", (KeepAlive, MotoRequestHandler), {})
            self._server = make_server(self._host, 0, app, threaded=True, request_handler=handler)
        except BaseException:
            iam_authentication.release()
            self._authenticating = False
            raise
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
        if self._authenticating:
            iam_authentication.release()
            self._authenticating = False

"""A Lambda Runtime API on loopback with the emulator's semantics, and an SQS event source
that invokes through it.

What a process that reaches `AWS_LAMBDA_RUNTIME_API` can do on Lambda, as the public Runtime
Interface Emulator implements it (aws/aws-lambda-runtime-interface-emulator,
`internal/lambda/core/states.go`, `internal/lambda/rapi/handler/invocationnext.go`,
`invocationresponse.go`):

- `GET /2018-06-01/runtime/invocation/next` while an invocation runs succeeds
  (`RuntimeRunningState.Ready()` returns nil) and renders the **current** invocation again:
  its payload and its `Lambda-Runtime-Aws-Request-Id`;
- once the current invocation is answered, `next` waits for, and hands out, the **next**
  invocation: whoever calls it gets that invocation;
- `POST …/invocation/{id}/response` or `…/error` with the current id answers the invocation
  (202); a second answer is refused (403 `InvalidStateTransition`), so is an answer for an id
  that is not the current one (400 `InvalidRequestID`).

The runtime's own client (awslambdaric) raises when its answer is refused, and its process
exits: Lambda then starts a fresh execution environment (`LambdaRuntimeClient.handle_exception`
re-raises; `bootstrap.run` does not catch it). A test harness that plays the runtime does the
same (see tests/worker/test_runtime_api.py).

One execution environment, one invocation at a time: `invoke` waits for the environment to
be free, hands the event to the next `next` and waits for its answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Self

from claude_jobs.worker.loopback import QuietHTTPServer

from .runtime import ACCOUNT_ID, REGION

log = logging.getLogger(__name__)

PREFIX = "/2018-06-01/runtime"


@dataclass
class Answer:
    kind: Literal["response", "error", "timeout", "reset"]
    body: Any = None


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    handed_out: bool = False
    answer: Answer | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: How many times `next` rendered it (more than once: someone asked again while it ran).
    renders: int = 0


class RuntimeApi:
    """The Runtime API of one execution environment."""

    def __init__(self, function_name: str = "claude-jobs-worker") -> None:
        self._function_name = function_name
        self._lock = threading.Condition()
        self._current: Invocation | None = None
        self._free = True  # no invocation is running: the next `invoke` may start
        self._closing = False
        self.invocations: list[Invocation] = []
        self.refused: list[tuple[str, str, int]] = []  # (request id, path kind, status)
        self._server = QuietHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="runtime-api", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        """`AWS_LAMBDA_RUNTIME_API`'s value: host:port."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    # ------------------------------------------------------------ the service's side

    def invoke(self, event: Any, timeout_seconds: float) -> Answer:
        """Run one invocation: wait for the environment, hand `event` to the next `next`,
        wait for an answer (a timeout is answered `timeout`, and the environment reset)."""
        with self._lock:
            while not self._free and not self._closing:
                self._lock.wait(0.5)
            invocation = Invocation(
                str(uuid.uuid4()),
                json.dumps(event).encode(),
                int((time.time() + timeout_seconds) * 1000),
            )
            self._free = False
            self._current = invocation
            self.invocations.append(invocation)
            self._lock.notify_all()
        if not invocation.done.wait(timeout_seconds):
            self._answer(invocation, Answer("timeout"))
        assert invocation.answer is not None
        return invocation.answer

    def reset(self) -> None:
        """The environment's runtime exited (or was reset): an unanswered invocation fails."""
        with self._lock:
            current = self._current
        if current is not None and current.answer is None:
            self._answer(current, Answer("reset"))

    def _answer(self, invocation: Invocation, answer: Answer) -> bool:
        with self._lock:
            if invocation.answer is not None:
                return False
            invocation.answer = answer
            invocation.done.set()
            # Answered: the environment is free for the service's next invocation, which is
            # handed to whoever calls `next` first.
            self._free = True
            self._lock.notify_all()
            return True

    # ------------------------------------------------------------ the runtime's side

    def next_invocation(self) -> Invocation | None:
        """`GET …/invocation/next`: the running invocation again, else the next one."""
        with self._lock:
            while not self._closing:
                current = self._current
                if current is not None and current.answer is None:
                    current.handed_out = True
                    current.renders += 1
                    return current
                self._lock.wait(0.5)
            return None

    def post(self, request_id: str, kind: Literal["response", "error"], body: Any) -> int:
        with self._lock:
            current = self._current
            if current is None or current.request_id != request_id or not current.handed_out:
                status = 400  # InvalidRequestID
            elif current.answer is not None:
                status = 403  # InvalidStateTransition
            else:
                status = 202
        if status == 202 and current is not None and self._answer(current, Answer(kind, body)):
            return 202
        status = status if status != 202 else 403
        with self._lock:
            self.refused.append((request_id, kind, status))
        return status

    def headers(self, invocation: Invocation) -> dict[str, str]:
        return {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": (
                f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self._function_name}"
            ),
            "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
            "Content-Type": "application/json",
        }


def _handler_for(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("runtime api: " + format, *args)

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self._send(404, b'{"errorType":"NotFound"}')
                return
            invocation = api.next_invocation()
            if invocation is None:
                self._send(503, b'{"errorType":"Closing"}')
                return
            self._send(200, invocation.payload, api.headers(invocation))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = self.path.removeprefix(f"{PREFIX}/").split("/")
            if parts == ["init", "error"]:
                self._send(202, b'{"status":"OK"}')
                return
            if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
                self._send(404, b'{"errorType":"NotFound"}')
                return
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            kind: Literal["response", "error"] = "response" if parts[2] == "response" else "error"
            status = api.post(parts[1], kind, body)
            error = {400: "InvalidRequestID", 403: "InvalidStateTransition"}.get(status)
            payload = {"status": "OK"} if error is None else {"errorType": error}
            self._send(status, json.dumps(payload).encode())

    return Handler


class SqsEventSource:
    """Lambda's SQS event source mapping for one environment: receive one message, invoke
    through the Runtime API, delete it unless the answer is an error, a timeout, a reset, or
    lists it in `batchItemFailures` (ReportBatchItemFailures)."""

    def __init__(
        self,
        api: RuntimeApi,
        queue_url: str,
        queue_arn: str,
        *,
        invocation_seconds: float = 120,
        poll_seconds: int = 1,
    ) -> None:
        self._api = api
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._invocation_seconds = invocation_seconds
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.answers: list[tuple[str, Answer]] = []  # (message body, answer)

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="sqs-event-source", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._poll_seconds + 5)

    def _run(self) -> None:
        import boto3

        from .workers import failed_ids, sqs_record

        sqs = boto3.client("sqs", region_name=REGION)
        while not self._stop.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=self._poll_seconds,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                if self._stop.wait(0.5):
                    return
                continue
            for message in messages:
                record = sqs_record(dict(message), self._queue_arn)
                answer = self._api.invoke({"Records": [record]}, self._invocation_seconds)
                self.answers.append((record["body"], answer))
                if answer.kind != "response":
                    continue  # the message comes back after its visibility timeout
                failed = failed_ids(answer.body, {record["messageId"]})
                if failed is None or record["messageId"] in failed:
                    continue
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=record["receiptHandle"])

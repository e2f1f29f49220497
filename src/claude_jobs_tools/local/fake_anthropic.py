"""A scriptable stand-in for the Anthropic Messages API, served over loopback HTTP.

The worker's tests run the real Claude Code CLI against it, and the local stack uses it as its
offline model. It speaks just enough of the API for the CLI: `POST /v1/messages` answered as a
server-sent event stream (or as one JSON message when `stream` is false), `POST
/v1/messages/count_tokens`, and error answers in the API's shape. Every request is recorded,
whatever its method or path, so a test can assert that something never arrived.

    fake = FakeAnthropic().start()
    fake.script(ToolUse("Bash", {"command": "ls"}), Text("done"))
    ...                          # point ANTHROPIC_BASE_URL at fake.url
    fake.requests                # every request received, with headers and body
    fake.close()

Each `POST /v1/messages` takes the next scripted reply; when the script is empty the `default`
answers (a fixed reply, or a function of the request).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from claude_jobs.worker.loopback import QuietHTTPServer

__all__ = [
    "ApiError",
    "FakeAnthropic",
    "RecordedRequest",
    "Reply",
    "Text",
    "ToolUse",
    "Usage",
]

_ids = itertools.count(1)
#: The ends of Bedrock's model invocation paths (`/model/<id>/invoke…`).
INVOKE_SUFFIXES = ("/invoke", "/invoke-with-response-stream")


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 12
    output_tokens: int = 7
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class Text:
    """An assistant message with one text block, ending the turn."""

    text: str
    usage: Usage = field(default_factory=Usage)
    delay: float = 0.0  # seconds before the answer's headers are sent
    chunk_chars: int = 4096  # the text is streamed in deltas of at most this many characters
    stop_reason: str = "end_turn"


@dataclass(frozen=True)
class ToolUse:
    """An assistant message asking to run one tool (`stop_reason: tool_use`)."""

    name: str
    input: dict[str, Any]
    text: str | None = None  # an optional text block before the tool call
    usage: Usage = field(default_factory=Usage)
    delay: float = 0.0
    id: str | None = None


@dataclass(frozen=True)
class ApiError:
    """An error answer: 500 `api_error`, 529 `overloaded_error`, 400 `invalid_request_error`…"""

    status: int = 500
    type: str = "api_error"
    message: str = "Internal server error"
    delay: float = 0.0


Reply = Text | ToolUse | ApiError
Responder = Callable[["RecordedRequest"], Reply]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None
    raw: bytes = b""  # the body as received

    @property
    def is_messages(self) -> bool:
        """A model call: the Messages API's, or Bedrock's InvokeModel (with response stream)."""
        path = self.path.split("?")[0]
        return self.method == "POST" and (
            path == "/v1/messages"
            or (path.startswith("/model/") and path.endswith(INVOKE_SUFFIXES))
        )

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools offered to the model in this request."""
        tools = (self.body or {}).get("tools") or []
        return [t.get("name", "") for t in tools if isinstance(t, dict)]

    def tool_results(self) -> list[dict[str, Any]]:
        """The `tool_result` blocks of the last user message, content flattened to text."""
        messages = (self.body or {}).get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        if not users or not isinstance(users[-1].get("content"), list):
            return []
        results = []
        for block in users[-1]["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                results.append(
                    {
                        "tool_use_id": block.get("tool_use_id"),
                        "is_error": bool(block.get("is_error", False)),
                        "content": _flatten(block.get("content")),
                    }
                )
        return results

    def prompt_text(self) -> str:
        """All text of the first user message (the job's prompt, plus what the CLI adds)."""
        messages = (self.body or {}).get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        return _flatten(users[0].get("content")) if users else ""


def _flatten(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            _flatten(part.get("text", part.get("content")))
            for part in content
            if isinstance(part, dict)
        )
    return ""


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chunks(text: str, size: int) -> Iterator[str]:
    size = max(size, 1)
    for start in range(0, len(text), size):
        yield text[start : start + size]


class FakeAnthropic:
    """The fake API server. Thread-safe; start it, script it, read what it received."""

    def __init__(
        self,
        *,
        default: Reply | Responder = Text("Hello from the offline model."),
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`api_key`, when set, is the only `x-api-key` accepted (others get a 401)."""
        self.default = default
        self.api_key = api_key
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = QuietHTTPServer((host, port), self._handler())
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="fake-anthropic",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes replies that are waiting out a delay
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    # ------------------------------------------------------------ script and record

    def script(self, *replies: Reply) -> Self:
        """Queue replies for the next `POST /v1/messages` calls, in order."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_messages]

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        default = self.default
        return default(request) if callable(default) else default

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds` unless the server closes first; True if it closed."""
        return seconds > 0 and self._closing.wait(seconds)


def _handler_for(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-anthropic/1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests read `fake.requests` instead

        def _record(self) -> RecordedRequest:
            request = read_request(self)
            fake._record(request)
            return request

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("request-id", f"req_fake_{next(_ids)}")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, error: ApiError) -> None:
            self._json(
                error.status,
                {"type": "error", "error": {"type": error.type, "message": error.message}},
            )

        def _other(self) -> None:
            """Any method but POST: recorded (so a test sees that it arrived), then refused."""
            self._record()
            self._error(ApiError(404, "not_found_error", f"{self.path} is not served here"))

        do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _other

        def do_POST(self) -> None:
            request = self._record()
            if fake.api_key is not None and request.headers.get("x-api-key") != fake.api_key:
                self._error(ApiError(401, "authentication_error", "invalid x-api-key"))
                return
            path = request.path.split("?")[0]
            if path == "/v1/messages/count_tokens":
                self._json(200, {"input_tokens": 10})
                return
            if path != "/v1/messages":
                self._error(ApiError(404, "not_found_error", f"{path} is not served here"))
                return
            reply = fake._next_reply(request)
            if fake._wait(reply.delay):
                return
            if isinstance(reply, ApiError):
                self._error(reply)
                return
            body = request.body if isinstance(request.body, dict) else {}
            model = str(body.get("model", "claude-fake"))
            blocks, stop_reason = _blocks(reply)
            if body.get("stream"):
                self._stream(model, blocks, stop_reason, reply.usage, reply)
            else:
                self._json(200, _message(model, blocks, stop_reason, reply.usage))

        def _stream(
            self,
            model: str,
            blocks: list[dict[str, Any]],
            stop_reason: str,
            usage: Usage,
            reply: Text | ToolUse,
        ) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("request-id", f"req_fake_{next(_ids)}")
            self.end_headers()

            def send(event: str, data: dict[str, Any]) -> None:
                payload = _sse(event, data)
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.flush()

            chunk_chars = reply.chunk_chars if isinstance(reply, Text) else 4096
            for event in stream_events(model, blocks, stop_reason, usage, chunk_chars):
                send(event["type"], event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def read_request(handler: BaseHTTPRequestHandler) -> RecordedRequest:
    """Read one request's body and record it, whatever it is."""
    length = int(handler.headers.get("content-length") or 0)
    raw = handler.rfile.read(length) if length else b""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return RecordedRequest(
        method=handler.command,
        path=handler.path,
        headers={k.lower(): v for k, v in handler.headers.items()},
        body=body,
        raw=raw,
    )


def stream_events(
    model: str,
    blocks: list[dict[str, Any]],
    stop_reason: str,
    usage: Usage,
    chunk_chars: int = 4096,
) -> Iterator[dict[str, Any]]:
    """The Messages API stream events of one assistant message, `message_start` to
    `message_stop` (what the SSE stream and Bedrock's event stream both carry)."""
    start = _message(model, [], None, usage)
    start["usage"]["output_tokens"] = 1
    yield {"type": "message_start", "message": start}
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            yield {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
            for part in _chunks(block["text"], chunk_chars):
                yield {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": part},
                }
        else:
            yield {
                "type": "content_block_start",
                "index": index,
                "content_block": {**block, "input": {}},
            }
            yield {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
            }
        yield {"type": "content_block_stop", "index": index}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": usage.output_tokens},
    }
    yield {"type": "message_stop"}


def _blocks(reply: Text | ToolUse) -> tuple[list[dict[str, Any]], str]:
    if isinstance(reply, Text):
        return [{"type": "text", "text": reply.text}], reply.stop_reason
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    blocks.append(
        {
            "type": "tool_use",
            "id": reply.id or f"toolu_fake_{next(_ids):06d}",
            "name": reply.name,
            "input": reply.input,
        }
    )
    return blocks, "tool_use"


def _message(
    model: str, blocks: list[dict[str, Any]], stop_reason: str | None, usage: Usage
) -> dict[str, Any]:
    return {
        "id": f"msg_fake_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        },
    }

"""A scriptable stand-in for the Amazon Bedrock runtime, served over loopback HTTP.

It shares `FakeAnthropic`'s scripting (`Text`, `ToolUse`, `ApiError`, `Usage`, a default reply,
recorded requests) and speaks Bedrock's wire format for Anthropic models:

- `POST /model/<model id>/invoke-with-response-stream` (InvokeModelWithResponseStream): an AWS
  event stream (`application/vnd.amazon.eventstream`). Each Messages API stream event
  (`message_start` … `message_stop`) is one frame: a 12-byte prelude (total length, headers
  length, CRC32 of those 8 bytes), string headers `:event-type`=`chunk`,
  `:content-type`=`application/json`, `:message-type`=`event`, the payload
  `{"bytes": "<base64 of the event's JSON>"}`, and the CRC32 of everything before it.
- `POST /model/<model id>/invoke` (InvokeModel): the assistant message as one JSON document.
- Errors in Bedrock's shape: `{"message": …}` with the exception's name in `x-amzn-ErrorType`.

The request body is the Messages API's, without `model` (the path names it) and with
`anthropic_version`. Every request is recorded, whatever its method or path.

With `credentials` set, each model call must carry a valid AWS Signature Version 4 for service
`bedrock` in the fake's region: the fake recomputes the signature with botocore from the request
it received (`signature_matches`) and answers 403 `InvalidSignatureException` otherwise.

    fake = FakeBedrock(credentials=Credentials("AKID…", "secret…")).start()
    fake.script(ToolUse("Bash", {"command": "ls"}), Text("done"))
    ...                          # point the worker's Bedrock runtime endpoint at fake.url
    fake.close()
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from .fake_anthropic import (
    ApiError,
    FakeAnthropic,
    RecordedRequest,
    Text,
    ToolUse,
    Usage,
    _blocks,
    _ids,
    _message,
    read_request,
    stream_events,
)

__all__ = [
    "EVENT_STREAM",
    "Credentials",
    "FakeBedrock",
    "chunk_frame",
    "event_frame",
    "signature_matches",
]

EVENT_STREAM = "application/vnd.amazon.eventstream"
SERVICE = "bedrock"

_INVOKE = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream)$")
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
#: Bedrock's exception names for the fake's scripted errors, by the Messages API's type.
_EXCEPTIONS = {
    "invalid_request_error": "ValidationException",
    "authentication_error": "AccessDeniedException",
    "permission_error": "AccessDeniedException",
    "not_found_error": "ResourceNotFoundException",
    "rate_limit_error": "ThrottlingException",
    "overloaded_error": "ServiceUnavailableException",
    "api_error": "InternalServerException",
}


@dataclass(frozen=True)
class Credentials:
    """The AWS credentials a signature must be made with."""

    access_key: str
    secret_key: str
    token: str | None = None


# ------------------------------------------------------------------ event-stream framing


def event_frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One AWS event-stream message with string headers."""
    encoded = b""
    for name, value in headers:
        raw_name, raw_value = name.encode(), value.encode()
        encoded += bytes([len(raw_name)]) + raw_name + b"\x07"  # 7: a string header
        encoded += struct.pack(">H", len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def chunk_frame(event: dict[str, Any]) -> bytes:
    """The frame Bedrock sends for one Messages API stream event."""
    data = base64.b64encode(json.dumps(event, separators=(",", ":")).encode()).decode()
    return event_frame(
        [
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        json.dumps({"bytes": data}).encode(),
    )


# ------------------------------------------------------------------ signatures


def signature_matches(
    request: RecordedRequest,
    credentials: Credentials,
    region: str,
    *,
    service: str = SERVICE,
) -> bool:
    """Whether the request carries a SigV4 signature made with `credentials` for `service`
    in `region`: recomputed with botocore from the request as received (method, path, the
    headers it says it signed, body)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotocoreCredentials

    found = _AUTHORIZATION.match(request.headers.get("authorization", ""))
    date = request.headers.get("x-amz-date", "")
    if found is None or not date.startswith(found["date"]):
        return False
    if (found["key"], found["region"], found["service"]) != (
        credentials.access_key,
        region,
        service,
    ):
        return False
    if request.headers.get("x-amz-security-token") != credentials.token:
        return False
    signed = found["signed"].split(";")
    if not {"host", "x-amz-date"} <= set(signed) or any(h not in request.headers for h in signed):
        return False
    aws_request = AWSRequest(
        method=request.method,
        url=f"http://{request.headers['host']}{request.path}",
        data=request.raw,
        headers={name: request.headers[name] for name in signed},
    )
    aws_request.context["timestamp"] = date
    signer = SigV4Auth(
        BotocoreCredentials(credentials.access_key, credentials.secret_key, credentials.token),
        service,
        region,
    )
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    return bool(expected == found["signature"])


# ------------------------------------------------------------------ the fake


class FakeBedrock(FakeAnthropic):
    """The fake Bedrock runtime. Thread-safe; start it, script it, read what it received."""

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        region: str = "us-east-1",
        **kwargs: Any,
    ) -> None:
        self.credentials = credentials
        self.region = region
        super().__init__(**kwargs)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _bedrock_handler_for(self)

    @property
    def invocations(self) -> list[tuple[str, str]]:
        """(model id, operation) of every model call received, in order."""
        found = []
        for request in self.message_requests:
            match = _INVOKE.match(request.path.split("?")[0])
            if match:
                found.append((unquote(match[1]), match[2]))
        return found


def _bedrock_handler_for(fake: FakeBedrock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-bedrock/1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _error(self, status: int, exception: str, message: str) -> None:
            body = json.dumps({"message": message}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("x-amzn-errortype", exception)
            self.send_header("x-amzn-requestid", f"fake-{next(_ids)}")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _other(self) -> None:
            """Any other method or path (ListInferenceProfiles included): recorded, refused."""
            fake._record(read_request(self))
            self._error(404, "UnknownOperationException", f"{self.path} is not served here")

        do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _other

        def do_POST(self) -> None:
            request = read_request(self)
            fake._record(request)
            match = _INVOKE.match(request.path)
            if match is None:
                self._error(404, "UnknownOperationException", f"{request.path} is not served")
                return
            if fake.credentials is not None and not signature_matches(
                request, fake.credentials, fake.region
            ):
                self._error(
                    403,
                    "InvalidSignatureException",
                    "The request signature we calculated does not match the signature you "
                    "provided.",
                )
                return
            reply = fake._next_reply(request)
            if fake._wait(reply.delay):
                return
            if isinstance(reply, ApiError):
                self._error(reply.status, _EXCEPTIONS.get(reply.type, reply.type), reply.message)
                return
            model = unquote(match[1])
            blocks, stop_reason = _blocks(reply)
            if match[2] == "invoke-with-response-stream":
                self._stream(model, blocks, stop_reason, reply.usage, reply)
            else:
                message = _message(model, blocks, stop_reason, reply.usage)
                body = json.dumps(message).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("x-amzn-bedrock-input-token-count", str(reply.usage.input_tokens))
                self.send_header(
                    "x-amzn-bedrock-output-token-count", str(reply.usage.output_tokens)
                )
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def _stream(
            self,
            model: str,
            blocks: list[dict[str, Any]],
            stop_reason: str,
            usage: Usage,
            reply: Text | ToolUse,
        ) -> None:
            self.send_response(200)
            self.send_header("content-type", EVENT_STREAM)
            self.send_header("x-amzn-bedrock-content-type", "application/json")
            self.send_header("x-amzn-requestid", f"fake-{next(_ids)}")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            chunk_chars = reply.chunk_chars if isinstance(reply, Text) else 4096
            for frame in _frames(model, blocks, stop_reason, usage, chunk_chars):
                self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def _frames(
    model: str, blocks: list[dict[str, Any]], stop_reason: str, usage: Usage, chunk_chars: int
) -> Iterator[bytes]:
    for event in stream_events(model, blocks, stop_reason, usage, chunk_chars):
        if event["type"] == "message_stop":  # Bedrock adds its own metrics to the last event
            event = {
                **event,
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": usage.input_tokens,
                    "outputTokenCount": usage.output_tokens,
                },
            }
        yield chunk_frame(event)

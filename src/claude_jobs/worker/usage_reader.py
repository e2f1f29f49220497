"""Reading the usage out of the Messages API answers the proxy relays.

`UsageReader` reads a copy of one answer as it streams by (the bytes relayed are never
touched): for a server-sent event stream, `message_start` carries the message's model and its
input and cache usage, and each `message_delta` carries the usage so far (cumulative: it
replaces, never adds); for a plain JSON answer, its `usage`. Every time the message's usage
grows, the reader hands the previous and the new usage to `charge`, so the job's meter
(`metering.JobMeter`) grows by the difference as soon as the API reports it — the input cost
at the start of a stream, not only at its end.

Amazon Bedrock streams the same Messages API events in AWS event-stream framing
(`application/vnd.amazon.eventstream`): binary frames (a 12-byte prelude of total length,
headers length and their CRC32; typed headers; the payload; the frame's CRC32) whose `chunk`
events carry `{"bytes": base64(<one stream event's JSON>)}`. With `event_stream=True` the reader
takes its events from those frames; the usage fields are the same.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .pricing import Tokens

log = logging.getLogger("claude_jobs.worker.metering")  # the meter's log, as before the split

#: The longest SSE event the reader keeps in memory; longer ones (large text deltas) are
#: skipped, as usage is never in them.
MAX_EVENT_BYTES = 1024 * 1024
#: The largest plain JSON answer that is parsed for its usage.
MAX_JSON_BYTES = 16 * 1024 * 1024

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)

Charge = Callable[[Tokens | None, Tokens], None]
_DELTA_FIELDS = ("text", "partial_json", "thinking")


class UsageReader:
    """Reads the usage out of one relayed answer. Feed it the bytes, then `finish()`."""

    def __init__(
        self,
        *,
        streaming: bool,
        model: str,
        charge: Charge,
        content_encoding: str = "",
        event_stream: bool = False,
        shown: Callable[[int], None] | None = None,
    ) -> None:
        self.streaming = streaming
        self._event_stream = event_stream
        self._skip_bytes = 0  # the rest of an event-stream frame too long to keep
        self._finished = False
        self._model = model  # the request's model, until the answer names its own
        self._charge = charge
        self._shown = shown  # told the characters of each content delta
        self._buffer = bytearray()
        self._skipping = False
        self._usage: Tokens | None = None
        self._too_large = False
        encoding = content_encoding.strip().lower()
        self._decoder = (
            zlib.decompressobj(wbits=47) if encoding in ("gzip", "x-gzip", "deflate") else None
        )
        self._unreadable = encoding not in ("", "identity", "gzip", "x-gzip", "deflate")
        if self._unreadable:
            log.warning("an answer in %r encoding cannot be metered", encoding)

    def on_shown(self, shown: Callable[[int], None]) -> None:
        """Tell `shown` the characters of every content delta (an estimate of output not yet
        reported)."""
        self._shown = shown

    def feed(self, data: bytes) -> None:
        if self._unreadable or not data:
            return
        try:
            if self._decoder is not None:
                data = self._decoder.decompress(data, MAX_EVENT_BYTES)
            if self.streaming and self._event_stream:
                self._feed_frames(data)
            elif self.streaming:
                self._feed_events(data)
            elif not self._too_large:
                self._buffer += data
                if len(self._buffer) > MAX_JSON_BYTES:
                    self._too_large = True
                    self._buffer.clear()
                    log.warning("an answer too large to meter was relayed")
        except (zlib.error, ValueError, struct.error) as exc:  # never break the relay over it
            self._unreadable = True
            log.warning("metering stopped on an unreadable answer: %s", type(exc).__name__)

    def finish(self) -> None:
        """The answer is complete: charge a plain JSON answer's usage (once)."""
        if self._finished:
            return
        self._finished = True
        if self._unreadable or self.streaming or self._too_large or not self._buffer:
            return
        try:
            message = json.loads(bytes(self._buffer))
        except ValueError:
            return
        if isinstance(message, dict) and isinstance(message.get("usage"), dict):
            self._update(message["usage"], model=message.get("model"))

    # ------------------------------------------------------------ server-sent events

    def _feed_events(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = _EVENT_END.search(self._buffer)
            if end is None:
                if len(self._buffer) > MAX_EVENT_BYTES:
                    # Keep a few bytes: a separator may straddle the next chunk.
                    del self._buffer[:-3]
                    self._skipping = True
                return
            event = bytes(self._buffer[: end.start()])
            del self._buffer[: end.end()]
            if self._skipping:
                self._skipping = False  # the end of the event that was too long
                continue
            self._event(event)

    def _event(self, event: bytes) -> None:
        usage = b"message_start" in event or b"message_delta" in event
        if not usage and (self._shown is None or b"content_block_delta" not in event):
            return  # pings, block starts and stops: no usage
        lines = event.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        data = b"\n".join(
            line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")
        )
        try:
            payload = json.loads(data)
        except ValueError:
            return
        self._stream_event(payload)

    # ------------------------------------------------------------ AWS event-stream frames

    def _feed_frames(self, data: bytes) -> None:
        if self._skip_bytes:
            skipped = min(self._skip_bytes, len(data))
            self._skip_bytes -= skipped
            data = data[skipped:]
        self._buffer += data
        while len(self._buffer) >= _PRELUDE_BYTES:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if binascii.crc32(bytes(self._buffer[:8])) != prelude_crc:
                raise ValueError("an event-stream prelude with a bad checksum")
            if total < _PRELUDE_BYTES + 4 or headers_length > total - _PRELUDE_BYTES - 4:
                raise ValueError("an event-stream frame of impossible lengths")
            if total > MAX_EVENT_BYTES:  # text deltas only: usage is never that long
                skipped = min(total, len(self._buffer))
                del self._buffer[:skipped]
                self._skip_bytes = total - skipped
                continue
            if len(self._buffer) < total:
                return
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            (frame_crc,) = struct.unpack_from(">I", frame, total - 4)
            if binascii.crc32(frame[:-4]) != frame_crc:
                raise ValueError("an event-stream frame with a bad checksum")
            headers = _frame_headers(frame[_PRELUDE_BYTES : _PRELUDE_BYTES + headers_length])
            if headers.get(":message-type") != "event" or headers.get(":event-type") != "chunk":
                continue  # exceptions, or events that carry no Messages API event
            self._chunk(frame[_PRELUDE_BYTES + headers_length : -4])

    def _chunk(self, payload: bytes) -> None:
        try:
            wrapper = json.loads(payload)
            encoded = wrapper.get("bytes") if isinstance(wrapper, dict) else None
            if not isinstance(encoded, str):
                return
            event = json.loads(base64.b64decode(encoded, validate=True))
        except (ValueError, binascii.Error):
            return
        self._stream_event(event)

    # ------------------------------------------------------------ stream events

    def _stream_event(self, payload: Any) -> None:
        """One Messages API stream event (parsed JSON), from either framing."""
        if not isinstance(payload, dict):
            return
        if payload.get("type") == "content_block_delta":
            delta = payload.get("delta")
            if self._shown is not None and isinstance(delta, dict):
                chars = sum(len(v) for k in _DELTA_FIELDS if isinstance(v := delta.get(k), str))
                self._shown(chars)
        elif payload.get("type") == "message_start":
            message = payload.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                self._update(message["usage"], model=message.get("model"))
        elif payload.get("type") == "message_delta" and isinstance(payload.get("usage"), dict):
            self._update(payload["usage"])

    # ------------------------------------------------------------ usage

    def _update(self, usage: Mapping[str, Any], model: Any = None) -> None:
        before = self._usage
        current = before or Tokens(model=self._model)
        if isinstance(model, str) and model:
            current = replace(current, model=model)
        changes: dict[str, Any] = {}
        for name in _USAGE_FIELDS:
            value = _count(usage.get(name))
            if value is not None:
                changes[name] = value
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            one_hour = _count(split.get("ephemeral_1h_input_tokens"))
            if one_hour is not None:
                changes["cache_creation_1h_input_tokens"] = one_hour
        tools = usage.get("server_tool_use")
        if isinstance(tools, dict):
            searches = _count(tools.get("web_search_requests"))
            if searches is not None:
                changes["web_search_requests"] = searches
        after = replace(current, **changes)
        if after != before:
            self._usage = after
            self._charge(before, after)


_PRELUDE_BYTES = 12
#: Bytes of the value of each event-stream header type that has a fixed size.
_FIXED_HEADER_BYTES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


def _frame_headers(raw: bytes) -> dict[str, Any]:
    """An event-stream frame's headers (string values decoded; others kept as bytes)."""
    headers: dict[str, Any] = {}
    at = 0
    while at < len(raw):
        name_length = raw[at]
        name = raw[at + 1 : at + 1 + name_length].decode("utf-8", "replace")
        at += 1 + name_length
        if at >= len(raw):
            raise ValueError("a truncated event-stream header")
        kind = raw[at]
        at += 1
        if kind in _FIXED_HEADER_BYTES:
            size = _FIXED_HEADER_BYTES[kind]
            headers[name] = raw[at : at + size]
            at += size
        elif kind in (6, 7):  # bytes, string: a 2-byte length first
            (size,) = struct.unpack_from(">H", raw, at)
            value = raw[at + 2 : at + 2 + size]
            headers[name] = value.decode("utf-8", "replace") if kind == 7 else value
            at += 2 + size
        else:
            raise ValueError(f"an event-stream header of unknown type {kind}")
    return headers


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

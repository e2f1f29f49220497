"""Metering a job's Messages API calls from the answers the proxy relays.

`UsageReader` reads a copy of one answer as it streams by (the bytes relayed are never
touched): for a server-sent event stream, `message_start` carries the message's model and its
input and cache usage, and each `message_delta` carries the usage so far (cumulative: it
replaces, never adds); for a plain JSON answer, its `usage`. Every time the message's usage
grows, the reader hands the previous and the new usage to `charge`, so the job's meter grows
by the difference as soon as the API reports it — the input cost at the start of a stream,
not only at its end.

Amazon Bedrock streams the same Messages API events in AWS event-stream framing
(`application/vnd.amazon.eventstream`): binary frames (a 12-byte prelude of total length,
headers length and their CRC32; typed headers; the payload; the frame's CRC32) whose `chunk`
events carry `{"bytes": base64(<one stream event's JSON>)}`. With `event_stream=True` the reader
takes its events from those frames; the usage fields are the same.

`JobMeter` is one job's running total (tokens, cost, calls, calls in flight), shared by the
proxy's request threads; every method is thread-safe. Each forwarded call first reserves its
worst case against what is left of the budget (`JobMeter.reserve`: the input estimate plus
`max_tokens` at the output price, `max_tokens` lowered to what is left can pay, never below a
floor); the reservation is held until the call settles on the usage the upstream reports
(`Call.settle`). A caller that hangs up does not end the call: the proxy reads the answer on
and meters it. A call still open when its job ends is cut off and charged, besides the usage
already reported, the output its answer has shown since that report (`Call.shown_usd`: its
content deltas' characters, `CHARS_PER_TOKEN` a token, at most its reservation).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import struct
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .ports import Metered as Metered
from .pricing import Tokens, cost_usd

log = logging.getLogger("claude_jobs.worker.metering")

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
#: Characters of streamed content per output token, for an answer cut off before it reported
#: its usage (an overestimate of tokens: English text runs about four characters a token).
CHARS_PER_TOKEN = 3
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


# ------------------------------------------------------------------ the job's meter


@dataclass(frozen=True)
class Grant:
    """What a call may produce: `max_tokens` (lowered from the request's when the budget
    cannot pay for it), and the open call that holds its reservation."""

    max_tokens: int
    call: Call


class Call:
    """One forwarded call's share of its job's meter: what it reserved and what it has been
    charged so far. Its reader charges through `charge`; `settle` ends it."""

    def __init__(self, meter: JobMeter, reservation_usd: float) -> None:
        self._meter = meter
        self.reservation_usd = reservation_usd
        self.charged_usd = 0.0
        self.cut = False  # its job ended while it was open
        self.output_usd_per_token = 0.0
        self._shown_chars = 0  # content characters streamed since the last usage report
        self.settled = False
        self._cutters: list[Callable[[], None]] = []

    @property
    def outstanding_usd(self) -> float:
        return max(self.reservation_usd - self.charged_usd, 0.0)

    @property
    def shown_usd(self) -> float:
        """What the output streamed since the last usage report costs (estimated), at most
        what is left of the reservation: what a call cut off now is charged besides."""
        tokens = -(-self._shown_chars // CHARS_PER_TOKEN)
        return min(tokens * self.output_usd_per_token, self.outstanding_usd)

    def shown(self, chars: int) -> None:
        with self._meter._lock:
            self._shown_chars += chars

    def on_cut(self, cutter: Callable[[], None]) -> None:
        """Run `cutter` (e.g. close the upstream connection) if the job ends first."""
        with self._meter._lock:
            if not self.cut:
                self._cutters.append(cutter)
                return
        cutter()

    def charge(self, before: Tokens | None, after: Tokens) -> None:
        self._meter._charge(self, before, after)

    def settle(self) -> None:
        """The call is over: its reservation is given back (what it was charged stays)."""
        self._meter._settle(self)


class JobMeter:
    """One job's running usage and cost, and its limit. Thread-safe."""

    def __init__(
        self,
        job_id: str,
        limit_usd: float | None,
        max_in_flight: int,
        models: frozenset[str] | None = None,
    ) -> None:
        self.job_id = job_id
        #: The models this job's calls may name, besides the deployment's (None: any).
        self.models = models
        self._lock = threading.Lock()
        self._totals = Metered(limit_usd=limit_usd)
        self._in_flight = 0
        self._max_in_flight = max_in_flight
        self._open: set[Call] = set()
        self._closed = False

    def snapshot(self) -> Metered:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> Metered:
        if self._closed or not self._open:
            return self._totals
        return replace(self._totals, open_usd=sum(c.shown_usd for c in self._open))

    def reserve(
        self, *, input_usd: float, output_usd_per_token: float, max_tokens: int, floor: int
    ) -> Grant | str:
        """Hold a call's worst case against what is left of the budget, or say why not:
        "budget" (the settled cost has reached the limit) or "busy" (what is left is held by
        calls still open: it may come back when they settle). `max_tokens` is lowered to what
        is left can pay after the input estimate, but not below `floor` (nor raised). A call
        that does not fit even so is admitted only when no other call is open: so at most one
        call passes the limit, by at most its input misestimate and `floor` tokens."""
        with self._lock:
            t = self._totals
            if self._closed:
                return "budget"
            if t.limit_usd is None:
                granted = max_tokens
            else:
                if t.spent:
                    self._totals = replace(t, budget_refusals=t.budget_refusals + 1)
                    return "budget"
                left = t.limit_usd - t.cost_usd - sum(c.outstanding_usd for c in self._open)
                per_token = max(output_usd_per_token, 1e-12)
                if self._open and left < input_usd + min(max_tokens, floor) * per_token:
                    return "busy"  # only a call alone may go past the limit
                affordable = int(max(left - input_usd, 0.0) / per_token)
                granted = min(max_tokens, max(affordable, floor))
            call = Call(self, input_usd + granted * max(output_usd_per_token, 0.0))
            call.output_usd_per_token = max(output_usd_per_token, 0.0)
            self._open.add(call)
            return Grant(granted, call)

    def close(self) -> Metered:
        """The job has ended: every call still open is cut off and charged the output it has
        shown beyond its last usage report; nothing is charged after this. Returns the final
        figure."""
        with self._lock:
            open_calls, self._open = list(self._open), set()
            extra = 0.0
            cutters: list[Callable[[], None]] = []
            for call in open_calls:
                extra += call.shown_usd
                call.cut = True
                cutters += call._cutters
            self._totals = replace(self._totals, cost_usd=self._totals.cost_usd + extra)
            self._closed = True
            final = self._totals
        for cutter in cutters:
            try:
                cutter()
            except Exception as exc:  # never fail the job's end over it
                log.warning("an open call could not be cut off: %s", type(exc).__name__)
        return final

    def _settle(self, call: Call) -> None:
        with self._lock:
            call.settled = True
            self._open.discard(call)

    def admit(self) -> str | None:
        """Let one call through, or say why not: "budget" (spent) or "busy" (too many calls
        of this job in flight). An admitted call must be `release`d."""
        with self._lock:
            if self._totals.spent:
                self._totals = replace(
                    self._totals, budget_refusals=self._totals.budget_refusals + 1
                )
                return "budget"
            if self._in_flight >= self._max_in_flight:
                return "busy"
            self._in_flight += 1
            return None

    def forwarded(self) -> None:
        with self._lock:
            self._totals = replace(self._totals, calls=self._totals.calls + 1)

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def charge(self, before: Tokens | None, after: Tokens) -> None:
        """Add the growth of one call's usage from `before` to `after`."""
        self._charge(None, before, after)

    def _charge(self, call: Call | None, before: Tokens | None, after: Tokens) -> None:
        base = before or Tokens(model=after.model)
        delta_cost = cost_usd(after) - cost_usd(base)
        with self._lock:
            if self._closed:
                return  # the job's figure is final (its open calls counted at their worst)
            if call is not None:
                call.charged_usd += delta_cost
                if after.output_tokens != base.output_tokens:
                    call._shown_chars = 0  # the report covers what was shown
            t = self._totals
            self._totals = replace(
                t,
                input_tokens=t.input_tokens + after.input_tokens - base.input_tokens,
                output_tokens=t.output_tokens + after.output_tokens - base.output_tokens,
                cache_read_input_tokens=t.cache_read_input_tokens
                + after.cache_read_input_tokens
                - base.cache_read_input_tokens,
                cache_creation_input_tokens=t.cache_creation_input_tokens
                + after.cache_creation_input_tokens
                - base.cache_creation_input_tokens,
                cost_usd=t.cost_usd + delta_cost,
            )

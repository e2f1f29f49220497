"""A job's progress events: the agent's message stream turned into a bounded, scrubbed,
ordered record (`GET /v1/jobs/{id}/events`).

The agent runner hands every claude-agent-sdk message to `ProgressRecorder.message` (the
request's `on_message`); the job processor adds the status transitions and the final usage.
Events are:

- `status` — `queued` (once per job, at its creation time) and `running` when a worker claims
  it; the terminal status when the run ends (written *before* the job's terminal transition,
  so a reader that sees the job terminal sees every event);
- `text` — each text block of the agent, scrubbed, then cut to 2 KiB (`truncated`);
- `tool_use` — the tool and its input as compact JSON, scrubbed, then cut to 512 chars;
- `tool_result` — the tool and whether it failed (never its output);
- `usage` — cumulative tokens and cost: after each turn (the higher of the CLI's figures and
  the key proxy's meter) and once more at the end (the figures the job records).

Storage, for cost: events are buffered and written in batches by a writer thread (a batch
when `flush_events` are waiting or the oldest has waited `flush_seconds`, and at the end):
one PutItem per batch, so a job costs a few writes, not one per event, and the agent's event
loop never waits on a write.

Sequence numbers are assigned by the worker at write time: each batch continues from the
last stored seq. A job's first claim starts at 1; a later attempt (a redelivered or released
job) or a later segment of a long job (`segment` given) reads the last stored seq first, so
its events follow the earlier ones, never overwrite or interleave with them. Two writers that
meet anyway (a stale attempt still running) collide on the batch key: the loser re-reads the
last seq and renumbers. A retried write of one batch is a no-op (`EventStore.append`).

Bounds: at most `MAX_EVENTS_PER_JOB` (1,000) events per job; past `max - RESERVED_EVENTS`
only `status` and the final `usage` are kept, so the ending is always recorded; the rest is
dropped and counted in the worker's log. A failing store never fails the job: the batch is
dropped (its seqs are skipped) and the run goes on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..approval_models import PendingApproval
from ..errors import EventSeqConflictError
from ..models import (
    EVENT_TEXT_BYTES,
    EVENT_TOOL_INPUT_CHARS,
    MAX_EVENTS_PER_JOB,
    Job,
    JobStatus,
    Usage,
)
from ..observability import deferred_logger
from ..ports import EventStore
from .metering import Metered
from .scrub import Scrubber

log = deferred_logger()

#: Slots of the per-job bound kept for status events and the final usage.
RESERVED_EVENTS = 10
#: A batch is written when this many events wait (at most the store's batch size) …
FLUSH_EVENTS = 25
#: … or when the oldest waiting event has waited this long.
FLUSH_SECONDS = 1.0
#: Tries of one batch (conflicts with another writer included) before it is dropped.
WRITE_TRIES = 3


def _iso(moment: datetime) -> str:
    """UTC, to the millisecond (the API shows job times the same way in status events)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cut_bytes(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to at most `limit` UTF-8 bytes (never inside a character)."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", "ignore"), True


def cut_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ProgressRecorder:
    """One job run's events. `message` is called from the agent's event loop and only
    buffers; a writer thread stores. Call `close` (or `finish`) exactly once at the end."""

    def __init__(
        self,
        store: EventStore,
        job: Job,
        scrubber: Scrubber,
        *,
        max_events: int = MAX_EVENTS_PER_JOB,
        flush_events: int = FLUSH_EVENTS,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
        segment: int | None = None,
    ) -> None:
        self._store = store
        self._job = job
        self._scrubber = scrubber
        self._max = max_events
        self._flush_events = max(1, flush_events)
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._segment = segment
        self._lock = threading.Condition()
        self._pending: list[tuple[float, dict[str, Any]]] = []  # (added at, event without seq)
        self._last_seq = 0  # the highest seq written (or skipped by a dropped batch)
        self._accepted = 0  # events accepted for this job so far (stored ones included)
        self._closing = False
        self._disabled = False  # no store, or closed: nothing more is recorded
        self._writer: threading.Thread | None = None
        self._meter: Callable[[], Metered | None] = lambda: None
        #: Events not kept (the per-job bound) and batches not stored (store failures).
        self.dropped = 0
        self.lost = 0
        # What the message stream told so far.
        self._tools: dict[str, str] = {}  # tool_use id → tool name
        self._turn_usage: dict[str, dict[str, Any]] = {}  # assistant message id → usage
        self._reported: tuple[int, int, float] | None = None

    # ------------------------------------------------------------ life

    def open(self) -> ProgressRecorder:
        """Record the claim (`queued` first for a job's first events, then `running`) and
        start the writer. Never raises: without a store the run goes on unrecorded."""
        try:
            # A job's first claim has nothing stored before it (submit writes no events); a
            # later attempt, or a later segment of a long job, continues after what is.
            later = self._job.attempts > 1 or self._segment is not None
            self._last_seq = self._store.last_seq(self._job.job_id) if later else 0
        except Exception as exc:
            log.warning(
                "job %s: progress events unavailable: %s", self._job.job_id, type(exc).__name__
            )
            self._disabled = True
            return self
        self._accepted = self._last_seq
        if self._last_seq == 0:
            created = self._job.created_at
            self._add({"type": "status", "status": JobStatus.QUEUED.value}, at=created)
        self.status(JobStatus.RUNNING)
        self._write(self._take_all())  # at once: a caller sees the job start promptly
        self._writer = threading.Thread(
            target=self._run_writer, name=f"events-{self._job.job_id[:8]}", daemon=True
        )
        self._writer.start()
        return self

    def use_secrets(self, *secrets: str | None) -> None:
        """Scrub these values too from now on (the key and the job's proxy token)."""
        self._scrubber = self._scrubber.with_secrets(*secrets)

    def use_meter(self, meter: Callable[[], Metered | None]) -> None:
        """Where the running cost comes from (the key proxy's meter of this job)."""
        self._meter = meter

    def finish(self, ending: str, usage: Usage) -> None:
        """The final usage and the terminal status, all written before this returns."""
        self.usage(usage.input_tokens, usage.output_tokens, usage.total_cost_usd, force=True)
        self.status(JobStatus(ending))
        self.close()

    def awaiting(self, pending: PendingApproval, usage: Usage) -> None:
        """A call waits for a decision: the usage so far, `approval_requested` and the
        status `awaiting_approval`, all written before this returns."""
        self.usage(usage.input_tokens, usage.output_tokens, usage.total_cost_usd, force=True)
        self._add(
            {
                "type": "approval_requested",
                "approval_id": pending.approval_id,
                "tool": pending.tool,
                "input": self._scrubber.text(pending.input),
                "rule": pending.rule,
                "expires_at": _iso(pending.expires_at),
            },
            reserved=True,
        )
        self.status(JobStatus.AWAITING_APPROVAL)
        self.close()

    def close(self) -> None:
        """Write whatever waits and stop the writer."""
        with self._lock:
            if self._disabled:
                return
            self._closing = True
            self._lock.notify_all()
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        self._write(self._take_all())
        with self._lock:
            self._disabled = True
        if self.dropped or self.lost:
            log.warning(
                "job %s: %s progress event(s) over the bound dropped, %s not stored",
                self._job.job_id,
                self.dropped,
                self.lost,
            )

    # ------------------------------------------------------------ events

    def status(self, status: JobStatus) -> None:
        event: dict[str, Any] = {"type": "status", "status": status.value}
        if self._segment is not None:
            event["segment"] = self._segment
        self._add(event, reserved=True)

    def text(self, text: str) -> None:
        kept, truncated = cut_bytes(self._scrubber.text(text), EVENT_TEXT_BYTES)
        self._add({"type": "text", "text": kept, "truncated": truncated})

    def tool_use(self, tool_id: str | None, name: str, tool_input: Any) -> None:
        if tool_id:
            self._tools[tool_id] = name
        try:
            shown = json.dumps(tool_input, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            shown = str(tool_input)
        self._add(
            {
                "type": "tool_use",
                "tool": cut_chars(self._scrubber.text(name), 128),
                "input": cut_chars(self._scrubber.text(shown), EVENT_TOOL_INPUT_CHARS),
            }
        )

    def tool_result(self, tool_id: str | None, is_error: bool) -> None:
        name = self._tools.get(tool_id or "", "?")
        tool = cut_chars(self._scrubber.text(name), 128)
        self._add({"type": "tool_result", "tool": tool, "is_error": bool(is_error)})

    def usage(
        self, input_tokens: int, output_tokens: int, cost_usd: float, *, force: bool = False
    ) -> None:
        figures = (int(input_tokens), int(output_tokens), round(float(cost_usd), 6))
        if figures == self._reported and not force:
            return
        self._reported = figures
        self._add(
            {
                "type": "usage",
                "input_tokens": figures[0],
                "output_tokens": figures[1],
                "total_cost_usd": figures[2],
            },
            reserved=force,
        )

    def message(self, message: Any) -> None:
        """One claude-agent-sdk message (the agent runner's `on_message`). Never raises."""
        try:
            self._message(message)
        except Exception as exc:  # progress must never break a run
            log.warning("job %s: a progress event was lost: %s", self._job.job_id, exc)

    def _message(self, message: Any) -> None:
        from claude_agent_sdk import (
            AssistantMessage,
            TextBlock,
            ToolResultBlock,
            ToolUseBlock,
            UserMessage,
        )

        if isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, TextBlock) and block.text.strip():
                    self.text(block.text)
                elif isinstance(block, ToolUseBlock):
                    self.tool_use(block.id, block.name, block.input)
            if message.usage:
                key = message.message_id or f"#{len(self._turn_usage)}"
                self._turn_usage[key] = dict(message.usage)
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            results = [b for b in message.content if isinstance(b, ToolResultBlock)]
            if results:
                self._running_usage()  # a turn ended: its usage before its tools' results
            for block in results:
                self.tool_result(block.tool_use_id, bool(block.is_error))

    def _running_usage(self) -> None:
        tokens_in = sum(int(u.get("input_tokens") or 0) for u in self._turn_usage.values())
        tokens_out = sum(int(u.get("output_tokens") or 0) for u in self._turn_usage.values())
        cost = 0.0
        try:
            metered = self._meter()
        except Exception:
            metered = None
        if metered is not None:
            tokens_in = max(tokens_in, metered.input_tokens)
            tokens_out = max(tokens_out, metered.output_tokens)
            cost = metered.cost_usd
        self.usage(tokens_in, tokens_out, cost)

    # ------------------------------------------------------------ buffer and writer

    def _add(
        self, event: dict[str, Any], *, reserved: bool = False, at: datetime | None = None
    ) -> None:
        now = self._clock()
        event["at"] = _iso(datetime.fromtimestamp(now, UTC) if at is None else at)
        with self._lock:
            if self._disabled:
                return
            bound = self._max if reserved else self._max - RESERVED_EVENTS
            if self._accepted >= bound:
                self.dropped += 1
                return
            self._accepted += 1
            self._pending.append((now, event))
            if len(self._pending) in (1, self._flush_events):
                self._lock.notify_all()  # the writer times its next batch from the oldest

    def _take_all(self) -> list[dict[str, Any]]:
        with self._lock:
            taken = [event for _, event in self._pending]
            self._pending.clear()
            return taken

    def _run_writer(self) -> None:
        while True:
            with self._lock:
                while not self._closing:
                    if len(self._pending) >= self._flush_events:
                        break
                    if self._pending:
                        wait = self._pending[0][0] + self._flush_seconds - self._clock()
                        if wait <= 0:
                            break
                        self._lock.wait(wait)
                    else:
                        self._lock.wait()
                if self._closing:
                    return  # `close` writes the rest
                taken = [event for _, event in self._pending[: self._flush_events]]
                del self._pending[: self._flush_events]
            self._write(taken)

    def _write(self, events: list[dict[str, Any]]) -> None:
        """Number `events` after the last stored seq and store them, `FLUSH_EVENTS` a batch."""
        for start in range(0, len(events), self._flush_events):
            self._write_batch(events[start : start + self._flush_events])

    def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        job_id = self._job.job_id
        for _ in range(WRITE_TRIES):
            numbered = _numbered(batch, self._last_seq, self._max)
            if not numbered:
                self.dropped += len(batch)
                return
            try:
                self._store.append(job_id, numbered)
            except EventSeqConflictError:
                before = self._last_seq
                try:  # another attempt wrote meanwhile: continue after it
                    self._last_seq = max(self._last_seq, self._store.last_seq(job_id))
                except Exception:
                    self._last_seq += len(numbered)
                with self._lock:  # its events count against the bound too
                    self._accepted += self._last_seq - before
                continue
            except Exception as exc:
                log.warning("job %s: progress events not stored: %s", job_id, type(exc).__name__)
                self._last_seq = int(numbered[-1]["seq"])  # skipped: later batches follow it
                self.lost += len(numbered)
                return
            self.dropped += len(batch) - len(numbered)
            self._last_seq = int(numbered[-1]["seq"])
            return
        self.lost += len(batch)


def _numbered(
    batch: Iterable[Mapping[str, Any]], last_seq: int, max_events: int
) -> list[dict[str, Any]]:
    """The batch with seqs after `last_seq`, cut at the per-job bound."""
    numbered = []
    for offset, event in enumerate(batch, start=1):
        seq = last_seq + offset
        if seq > max_events:
            break
        numbered.append({"seq": seq, **event})
    return numbered


class ProgressEvents:
    """Makes a `ProgressRecorder` for each run (the processor's dependency)."""

    def __init__(self, store: EventStore, **options: Any) -> None:
        self._store = store
        self._options = options

    def open(self, job: Job, scrubber: Scrubber, *, segment: int | None = None) -> ProgressRecorder:
        return ProgressRecorder(self._store, job, scrubber, segment=segment, **self._options).open()


class NoProgress:
    """The recorder of a worker without an event store: records nothing."""

    def open(self, job: Job, scrubber: Scrubber, *, segment: int | None = None) -> NoRecorder:
        return NoRecorder()


class NoRecorder:
    dropped = 0
    lost = 0

    def use_secrets(self, *secrets: str | None) -> None: ...

    def use_meter(self, meter: Callable[[], Metered | None]) -> None: ...

    def message(self, message: Any) -> None: ...

    def finish(self, ending: str, usage: Usage) -> None: ...

    def awaiting(self, pending: PendingApproval, usage: Usage) -> None: ...

    def close(self) -> None: ...

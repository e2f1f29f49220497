"""The local stack's other event sources: the jobs table's stream (→ the notifier function) and
the trigger relay queue (S3 notifications and bus events → the trigger function).

The emulator has no event source mappings and notifies no Lambda, so each source is a thread
that polls and invokes the function's pool, the way the AWS wiring would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class PollingSource:
    """A thread calling `poll_once()` until stopped; `poll_once` returns how much it handled
    (nothing → a short pause before the next call)."""

    def __init__(self, name: str, poll_once: Callable[[], int], idle_seconds: float = 0.5):
        self.name = name
        self._poll_once = poll_once
        self._idle = idle_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self._poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s failed; retrying", self.name)
                handled = 0
            if not handled:
                self._stop.wait(self._idle)


def stream_to_function(reader: Any, invoke: Callable[[dict[str, Any]], Any]) -> Callable[[], int]:
    """Deliver new stream records to the function in batches, as the DynamoDB event source
    does (a record it reports failed is logged: the local stack does not retry it)."""

    def poll_once() -> int:
        records = reader.poll()
        if records:
            log.debug("notifier: %d stream record(s)", len(records))
            answer = invoke({"Records": records})
            failures = (answer or {}).get("batchItemFailures") if isinstance(answer, dict) else None
            if failures:
                log.warning("the notifier reported %d stream record(s) failed", len(failures))
        return len(records)

    return poll_once


def relay_to_function(
    sqs: Any, queue_url: str, invoke: Callable[[dict[str, Any]], Any]
) -> Callable[[], int]:
    """Hand the relay queue's messages (S3 notifications, bus events) to the function."""
    from .trigger_relay import relay_once

    def poll_once() -> int:
        return relay_once(sqs, queue_url, lambda event, _context: invoke(event), wait_seconds=1)

    return poll_once

"""An in-memory event store with the DynamoDB adapter's semantics: batches keyed by their
first seq, a conditional write per batch (a retried identical batch is a no-op, another batch
at the key conflicts), reads that never repeat a seq."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from claude_jobs.adapters.events_table import MAX_BATCH_EVENTS
from claude_jobs.errors import EventSeqConflictError


class InMemoryEventStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: job id → first seq → the batch as stored (JSON text)
        self.batches: dict[str, dict[int, str]] = {}
        self.appends = 0  # writes attempted (what a batch costs)
        self.fail_next = 0  # the next N appends raise, as an unreachable table would

    def last_seq(self, job_id: str) -> int:
        with self._lock:
            batches = self.batches.get(job_id, {})
            if not batches:
                return 0
            return int(json.loads(batches[max(batches)])[-1]["seq"])

    def append(self, job_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        assert len(events) <= MAX_BATCH_EVENTS, "a batch over the store's bound"
        seqs = [int(e["seq"]) for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seqs not consecutive"
        body = json.dumps(list(events), ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self.appends += 1
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionError("the events table is unreachable")
            batches = self.batches.setdefault(job_id, {})
            if seqs[0] in batches:
                if batches[seqs[0]] == body:
                    return
                raise EventSeqConflictError(f"seq {seqs[0]} is taken")
            batches[seqs[0]] = body

    def read(self, job_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            batches = dict(self.batches.get(job_id, {}))
        found: list[dict[str, Any]] = []
        last = after
        for first in sorted(batches):
            if first <= after - MAX_BATCH_EVENTS:
                continue
            for event in json.loads(batches[first]):
                if event["seq"] > last and len(found) < limit:
                    found.append(event)
                    last = event["seq"]
        return found

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every stored event of the job, in order."""
        return self.read(job_id, 0, 10**6)

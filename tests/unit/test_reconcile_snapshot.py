"""The reconciler's snapshot reads: every shard of the unfinished-jobs index, page after page,
then the items by key, 100 a request, with the keys DynamoDB leaves unprocessed asked again.

A scripted client stands in for DynamoDB here (the emulator never leaves keys unprocessed or
pages an index of a few items); tests/integration/test_reconciler.py runs it on the emulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from claude_jobs.adapters.reconcile_table import DynamoReconcileStore
from claude_jobs.resources import OPEN_SHARDS

TABLE = "jobs"


def _job(job_id: str, status: str) -> dict[str, Any]:
    return {
        "job_id": {"S": job_id},
        "tenant_id": {"S": "t"},
        "status": {"S": status},
        "created_at": {"S": "2026-12-07T10:00:00+00:00"},
    }


class ScriptedDynamoDB:
    """250 keys in the index (two pages a shard), a counter among them; the first item read
    leaves 30 keys unprocessed once; one job ended between the index and the read."""

    def __init__(self) -> None:
        self.keys = [f"job-{n:03d}" for n in range(249)] + ["usage#t"]
        self.items = {
            key: _job(key, "running" if n % 2 else "queued") for n, key in enumerate(self.keys)
        }
        self.items["job-007"] = _job("job-007", "succeeded")
        self.items["usage#t"] = {"job_id": {"S": "usage#t"}, "pending": {"N": "3"}}
        self.queries: list[tuple[str, bool]] = []
        self.batches: list[int] = []
        self._left_once = True

    def _shard_keys(self, shard: str) -> list[str]:
        index = int(shard.removeprefix("open#"))
        return [key for n, key in enumerate(self.keys) if n % OPEN_SHARDS == index]

    def query(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["IndexName"] == "by_open" and "ConsistentRead" not in kwargs
        shard = kwargs["ExpressionAttributeValues"][":o"]["S"]
        keys = self._shard_keys(shard)
        start = kwargs.get("ExclusiveStartKey")
        self.queries.append((shard, start is not None))
        page = keys[len(keys) // 2 :] if start else keys[: len(keys) // 2]
        answer: dict[str, Any] = {"Items": [{"job_id": {"S": k}} for k in page]}
        if not start:
            answer["LastEvaluatedKey"] = {"job_id": {"S": page[-1]}}
        return answer

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        asked = RequestItems[TABLE]
        assert asked["ConsistentRead"] is True and len(asked["Keys"]) <= 100
        keys = [k["job_id"]["S"] for k in asked["Keys"]]
        self.batches.append(len(keys))
        left: list[str] = []
        if self._left_once:
            self._left_once = False
            keys, left = keys[:-30], keys[-30:]
        answer: dict[str, Any] = {"Responses": {TABLE: [self.items[k] for k in keys]}}
        if left:
            answer["UnprocessedKeys"] = {TABLE: {"Keys": [{"job_id": {"S": k}} for k in left]}}
        return answer


def test_a_snapshot_reads_every_page_of_every_shard_and_every_unprocessed_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr("claude_jobs.adapters.reconcile_table.time.sleep", pauses.append)
    client = ScriptedDynamoDB()
    # When the reconciler takes its snapshot
    snapshot = DynamoReconcileStore(client, TABLE).snapshot()  # type: ignore[arg-type]
    # Then every shard was read, its second page too
    shards = {f"open#{n}" for n in range(OPEN_SHARDS)}
    assert {shard for shard, _ in client.queries} == shards
    assert {shard for shard, next_page in client.queries if next_page} == shards
    # And the items were read 100 keys at most a request, the 30 left unprocessed once asked
    # again after a pause: 250 + 30 keys read in all
    assert max(client.batches) == 100 and sum(client.batches) == 280
    assert pauses == [0.05]
    # And the snapshot holds every unfinished job once (the one that ended meanwhile left out)
    # and the tenant's counter
    ids = [job.job_id for job in snapshot.jobs]
    assert len(ids) == len(set(ids)) == 248 and "job-007" not in ids
    assert snapshot.slots["t"].pending == 3

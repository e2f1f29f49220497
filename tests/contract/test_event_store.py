"""One contract for every EventStore: the DynamoDB adapter (on moto) and the in-memory fake
behave alike — ordered batches, idempotent re-writes, conflicts on a taken seq, reads after a
cursor that never repeat or reorder a seq."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from claude_jobs.adapters.events_table import MAX_BATCH_EVENTS
from claude_jobs.errors import EventSeqConflictError
from claude_jobs.ports import EventStore
from tests.fakes import InMemoryEventStore


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    from moto import mock_aws

    from claude_jobs.adapters.events_table import DynamoEventStore
    from claude_jobs_tools.provision import provision

    with mock_aws():
        settings = provision("contract", secret_value="sk-test").settings
        yield DynamoEventStore(boto3.client("dynamodb"), settings.events_table, 30)


def batch(first: int, count: int, text: str = "t") -> list[dict[str, Any]]:
    return [
        {"seq": seq, "at": "2026-11-30T00:00:00.000Z", "type": "text", "text": f"{text}{seq}"}
        for seq in range(first, first + count)
    ]


def test_batches_read_back_in_order_after_any_cursor(store: EventStore) -> None:
    # Given three batches of one job (of several sizes) and one of another job
    store.append("job-1", batch(1, 3))
    store.append("job-1", batch(4, MAX_BATCH_EVENTS))
    store.append("job-1", batch(4 + MAX_BATCH_EVENTS, 2))
    store.append("job-2", batch(1, 5, "other"))
    last = 5 + MAX_BATCH_EVENTS
    # When it is read after every possible cursor
    # Then each read has exactly the newer events, in seq order, of that job only
    assert store.last_seq("job-1") == last
    for after in range(0, last + 2):
        found = store.read("job-1", after, 1000)
        assert [e["seq"] for e in found] == list(range(after + 1, last + 1))
        assert all(e["text"] == f"t{e['seq']}" for e in found)
    # and a limit cuts a page
    assert [e["seq"] for e in store.read("job-1", 2, 4)] == [3, 4, 5, 6]
    assert store.read("job-9", 0, 10) == [] and store.last_seq("job-9") == 0


def test_rewriting_a_batch_is_a_no_op_and_another_batch_at_its_seq_conflicts(
    store: EventStore,
) -> None:
    # Given a stored batch
    store.append("job-1", batch(1, 2))
    # When the same batch is written again (a retried write), nothing changes
    store.append("job-1", batch(1, 2))
    assert [e["seq"] for e in store.read("job-1", 0, 100)] == [1, 2]
    # When a different batch claims the same first seq (another attempt), it is refused
    with pytest.raises(EventSeqConflictError):
        store.append("job-1", batch(1, 3, "late"))
    # Then the first writer's events stand
    assert [e["text"] for e in store.read("job-1", 0, 100)] == ["t1", "t2"]

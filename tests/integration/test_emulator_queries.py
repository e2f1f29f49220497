"""The emulator's queries: a table's own key reads that key's items, with moto's answers.

`claude_jobs_tools.local.dynamodb_queries` makes moto's `Query` on a table's partition key list
the items stored under that key instead of every item of the table. The answers must be what
DynamoDB gives (here: what the items written say), whatever the range condition, order, page,
filter or projection; and a query must not walk the other partitions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from claude_jobs_tools.local import dynamodb_queries
from tests.support.tables import create_table, mocked_dynamodb

EVENTS = "events"
JOBS = "jobs"
PARTITIONS = 30
EVENTS_EACH = 12


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    dynamodb_queries.install()
    with mocked_dynamodb() as client:
        create_table(client, EVENTS, ("job_id", "S"), ("seq", "N"))
        create_table(client, JOBS, ("pk", "S"))
        # written out of order, partitions interleaved: the answers' order is the query's own
        for seq in reversed(range(1, EVENTS_EACH + 1)):
            for job in range(PARTITIONS):
                client.put_item(
                    TableName=EVENTS,
                    Item={
                        "job_id": {"S": f"job-{job:02d}"},
                        "seq": {"N": str(seq)},
                        "kind": {"S": "tool" if seq % 3 else "text"},
                        "body": {"S": f"event {seq} of job {job}"},
                    },
                )
        for job in range(PARTITIONS):
            client.put_item(TableName=JOBS, Item={"pk": {"S": f"job-{job:02d}"}, "n": {"N": "1"}})
        yield client


def _seqs(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["seq"]["N"]) for item in items]


def _query(client: Any, **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.query(
        TableName=EVENTS,
        ExpressionAttributeValues={":j": {"S": "job-07"}, **kwargs.pop("values", {})},
        **kwargs,
    )
    return answer


@pytest.mark.parametrize(
    ("condition", "values", "expected"),
    [
        ("job_id = :j", {}, list(range(1, 13))),
        ("job_id = :j AND seq > :a", {":a": {"N": "9"}}, [10, 11, 12]),
        ("job_id = :j AND seq >= :a", {":a": {"N": "9"}}, [9, 10, 11, 12]),
        ("job_id = :j AND seq < :a", {":a": {"N": "3"}}, [1, 2]),
        ("job_id = :j AND seq <= :a", {":a": {"N": "3"}}, [1, 2, 3]),
        ("job_id = :j AND seq = :a", {":a": {"N": "5"}}, [5]),
        ("job_id = :j AND seq BETWEEN :a AND :b", {":a": {"N": "4"}, ":b": {"N": "6"}}, [4, 5, 6]),
        ("job_id = :j AND seq > :a", {":a": {"N": "12"}}, []),
    ],
)
def test_a_query_of_the_tables_key_answers_that_keys_items_in_order(
    dynamodb: Any, condition: str, values: dict[str, Any], expected: list[int]
) -> None:
    # Given 30 jobs with 12 events each, written out of order
    # When one job's events are queried with a range condition
    answer = _query(dynamodb, KeyConditionExpression=condition, values=values)
    # Then exactly its matching events come back, in seq order, and nothing of another job
    assert _seqs(answer["Items"]) == expected
    assert {item["job_id"]["S"] for item in answer["Items"]} <= {"job-07"}
    assert answer["Count"] == len(expected)


def test_order_pages_filters_and_projections_are_moto_s_own(dynamodb: Any) -> None:
    # Given 12 events of job-07
    # When read backwards, three at a time, page after page
    pages: list[list[int]] = []
    start: dict[str, Any] | None = None
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        answer = _query(
            dynamodb, KeyConditionExpression="job_id = :j", ScanIndexForward=False, Limit=3, **extra
        )
        pages.append(_seqs(answer["Items"]))
        start = answer.get("LastEvaluatedKey")
        if not start:
            break
    # Then the pages are the events from the last, three each
    assert [seq for page in pages for seq in page] == list(range(12, 0, -1))
    assert pages[0] == [12, 11, 10]
    # And a filter and a projection apply to the job's events only
    answer = _query(
        dynamodb,
        KeyConditionExpression="job_id = :j",
        FilterExpression="kind = :k",
        ProjectionExpression="seq",
        values={":k": {"S": "text"}},
    )
    assert answer["Items"] == [{"seq": {"N": str(seq)}} for seq in (3, 6, 9, 12)]
    assert answer["ScannedCount"] == 12
    # And a key with no items, on either table, answers nothing
    assert (
        dynamodb.query(
            TableName=EVENTS,
            KeyConditionExpression="job_id = :j",
            ExpressionAttributeValues={":j": {"S": "no-such-job"}},
        )["Items"]
        == []
    )
    assert dynamodb.query(
        TableName=JOBS,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "job-03"}},
    )["Items"] == [{"pk": {"S": "job-03"}, "n": {"N": "1"}}]


class _Walked(defaultdict[Any, Any]):
    """A table's partitions, counting how often all of them are listed."""

    walks = 0

    def values(self) -> Any:
        type(self).walks += 1
        return super().values()


def test_a_query_of_one_key_does_not_walk_the_other_partitions(dynamodb: Any) -> None:
    # Given the events table's partitions, watched for being listed whole
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(EVENTS)
    watched = _Walked(dict)
    watched.update(table.items)
    table.items = watched
    # When one job's events are queried, and read again after a new one
    assert len(_query(dynamodb, KeyConditionExpression="job_id = :j")["Items"]) == 12
    dynamodb.put_item(
        TableName=EVENTS, Item={"job_id": {"S": "job-07"}, "seq": {"N": "13"}, "kind": {"S": "x"}}
    )
    assert _seqs(_query(dynamodb, KeyConditionExpression="job_id = :j")["Items"])[-1] == 13
    # Then no query listed every partition of the table
    assert _Walked.walks == 0
    # (while a scan does: the watch sees a walk)
    dynamodb.scan(TableName=EVENTS, Limit=1)
    assert _Walked.walks > 0


INDEXED = "indexed"


def _indexed_table(client: Any) -> list[dict[str, Any]]:
    """A table with a sparse hash-only index (`by_open`) and an index with a sort key
    (`by_tenant`), written out of key order: 300 items, one in ten with an `open_shard` of three
    values, each with a tenant of five and a `created` sort value. Returns the items."""
    client.create_table(
        TableName=INDEXED,
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("job_id", "open_shard", "tenant", "created")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_open",
                "KeySchema": [{"AttributeName": "open_shard", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": "by_tenant",
                "KeySchema": [
                    {"AttributeName": "tenant", "KeyType": "HASH"},
                    {"AttributeName": "created", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    items = []
    for n in reversed(range(300)):
        item = {
            "job_id": {"S": f"job-{(n * 7919) % 300:03d}"},
            "tenant": {"S": f"t{n % 5}"},
            "created": {"S": f"2026-12-07T{n % 24:02d}:{n % 60:02d}#{n:03d}"},
        }
        if n % 10 == 0:
            item["open_shard"] = {"S": f"open#{n % 3}"}
        client.put_item(TableName=INDEXED, Item=item)
        items.append(item)
    return items


def _pages(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        answer = client.query(TableName=INDEXED, **kwargs, **extra)
        found.extend(answer["Items"])
        start = answer.get("LastEvaluatedKey")
        if not start:
            return found


def test_an_index_query_answers_the_items_carrying_its_key_without_sorting_the_table(
    dynamodb: Any,
) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    items = _indexed_table(dynamodb)
    # When each shard of the sparse index is read, four keys a page
    compared = 0
    original = DynamoType.__lt__

    def counted(self: Any, other: Any) -> bool:
        nonlocal compared
        compared += 1
        return original(self, other)

    DynamoType.__lt__ = counted  # type: ignore[method-assign]
    try:
        shards = {
            shard: _pages(
                dynamodb,
                IndexName="by_open",
                KeyConditionExpression="open_shard = :s",
                ExpressionAttributeValues={":s": {"S": f"open#{shard}"}},
                Limit=4,
            )
            for shard in range(3)
        }
    finally:
        DynamoType.__lt__ = original  # type: ignore[method-assign]
    # Then each shard answers exactly its items' keys, in the table key's order (an index
    # without a sort key orders by the table's key), once each across the pages
    for shard, found in shards.items():
        expected = sorted(
            item["job_id"]["S"]
            for item in items
            if item.get("open_shard") == {"S": f"open#{shard}"}
        )
        assert [item["job_id"]["S"] for item in found] == expected
        assert all(set(item) == {"job_id", "open_shard"} for item in found)
    assert sum(len(found) for found in shards.values()) == 30
    # And the table's 300 items were never sorted (moto's listing sorted them for each page:
    # 18,792 comparisons here; sorting the ten of a shard, page after page, a few hundred)
    assert compared < 400, compared
    # And an index with a sort key still answers its range, newest first, filter applied
    answer = dynamodb.query(
        TableName=INDEXED,
        IndexName="by_tenant",
        KeyConditionExpression="tenant = :t AND created > :c",
        FilterExpression="attribute_exists(open_shard)",
        ExpressionAttributeValues={":t": {"S": "t0"}, ":c": {"S": "2026-12-07T12"}},
        ScanIndexForward=False,
    )
    expected = sorted(
        (
            item["created"]["S"]
            for item in items
            if item["tenant"] == {"S": "t0"}
            and item["created"]["S"] > "2026-12-07T12"
            and "open_shard" in item
        ),
        reverse=True,
    )
    assert [item["created"]["S"] for item in answer["Items"]] == expected
    in_range = [
        i for i in items if i["tenant"] == {"S": "t0"} and i["created"]["S"] > "2026-12-07T12"
    ]
    assert answer["ScannedCount"] == len(in_range)

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

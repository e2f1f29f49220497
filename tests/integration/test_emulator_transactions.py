"""The emulator's transactions: backed up item by item, with moto's answers unchanged.

`claude_jobs_tools.local.dynamodb_transactions` replaces moto's whole-table copy before each
TransactWriteItems with a copy of the items it names. A failed transaction must still leave
every item (and the table's stream) as it was; a successful one must keep all its writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from claude_jobs_tools.local import dynamodb_transactions
from claude_jobs_tools.local.table_stream import streams_client
from tests.support.tables import create_table, mocked_dynamodb

TABLE = "t"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    dynamodb_transactions.install()
    with mocked_dynamodb() as client:
        create_table(client, TABLE, ("pk", "S"), stream=True)
        yield client


def _stream_records(client: Any) -> int:
    streams = streams_client()
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return len(streams.get_records(ShardIterator=iterator)["Records"])


def _item(client: Any, key: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = client.get_item(
        TableName=TABLE, Key={"pk": {"S": key}}, ConsistentRead=True
    ).get("Item")
    return found


def _update(key: str, value: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": "SET v = :v",
            "ExpressionAttributeValues": {":v": {"S": value}},
        }
    }


def test_a_failed_transaction_leaves_every_item_and_the_stream_as_they_were(
    dynamodb: Any,
) -> None:
    # Given an item "a", and a table with one stream record
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "v": {"S": "before"}})
    records = _stream_records(dynamodb)
    # When a transaction updates "a", creates "new", then fails its condition on "missing"
    with pytest.raises(ClientError) as caught:
        dynamodb.transact_write_items(
            TransactItems=[
                _update("a", "during"),
                {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "new"}}}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "missing"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    # Then it is cancelled as DynamoDB would cancel it, and nothing of it remains
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _item(dynamodb, "a") == {"pk": {"S": "a"}, "v": {"S": "before"}}
    assert _item(dynamodb, "new") is None
    assert _stream_records(dynamodb) == records


def test_a_successful_transaction_keeps_all_its_writes(dynamodb: Any) -> None:
    # Given an item "a"
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "v": {"S": "before"}})
    # When a transaction updates it under a condition that holds and creates another
    dynamodb.transact_write_items(
        TransactItems=[
            {
                **_update("a", "after"),
                "Update": {
                    **_update("a", "after")["Update"],
                    "ConditionExpression": "v = :old",
                    "ExpressionAttributeValues": {":v": {"S": "after"}, ":old": {"S": "before"}},
                },
            },
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "b"}}}},
        ]
    )
    # Then both writes are there, and the other items of the table are untouched
    assert _item(dynamodb, "a") == {"pk": {"S": "a"}, "v": {"S": "after"}}
    assert _item(dynamodb, "b") == {"pk": {"S": "b"}}


def test_the_backup_no_longer_copies_whole_tables(dynamodb: Any) -> None:
    # Given the patch is installed, When moto's backend copies a table for a backup,
    # Then it gets the table itself (the items are backed up one by one instead)
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    table = next(
        t
        for backend in models.dynamodb_backends.values()
        for r in backend.values()
        for t in r.tables.values()
    )
    assert isinstance(table, Table)
    backup_copy: Any = vars(models)["copy"]
    assert backup_copy.deepcopy(table) is table
    assert backup_copy.deepcopy({"x": [1]}) == {"x": [1]}

"""The emulator's DynamoDB and its stream: plain answers (`emulator.plain_answers`: `GetItem`,
`Query` and the stream's `GetRecords` written as the JSON they already are, not through moto's
generic serializer, and read back exactly as written), transactions that leave no stream record
when they fail and back up tables without copying their streams, and shard iterators kept in
bounds."""

from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from claude_jobs_tools.local.emulator import PLAIN_ANSWERS, Emulator
from claude_jobs_tools.local.table_stream import StreamReader
from tests.support.tables import create_table

#: An item with every attribute type: binary values, sets, nested lists and maps (one with an
#: empty key, which moto's serializer mangled), text that JSON escapes.
ITEM: dict[str, Any] = {
    "k": {"S": "job-1"},
    "n": {"N": "1.50"},
    "b": {"B": b"\x00\xffbin"},
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "m": {"M": {"": {"S": "empty key"}, "in": {"L": [{"N": "3"}, {"NULL": True}]}}},
    "flag": {"BOOL": False},
    "text": {"S": 'ünï ✓ " \\ \n </script>'},
}


def clients(emulator: Emulator) -> tuple[Any, Any]:
    args: dict[str, Any] = {
        "endpoint_url": emulator.url,
        "region_name": "us-east-1",
        "aws_access_key_id": emulator.credentials.access_key_id,
        "aws_secret_access_key": emulator.credentials.secret_access_key,
    }
    streams = boto3.client(
        "dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"), **args
    )
    return boto3.client("dynamodb", **args), streams


def streamed_table(dynamodb: Any) -> str:
    """A new table keyed by `k`, with a stream of new and old images."""
    return create_table(dynamodb, f"t-{uuid.uuid4().hex[:8]}", ("k", "S"), stream=True)


def fail_a_transaction(dynamodb: Any, name: str, *, writing: str) -> None:
    """A transaction that puts the item `writing`, then fails on its second put's condition
    (`item-0` exists already)."""
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": name, "Item": {"k": {"S": writing}}}},
                {
                    "Put": {
                        "TableName": name,
                        "Item": {"k": {"S": "item-0"}},
                        "ConditionExpression": "attribute_not_exists(k)",
                    }
                },
            ]
        )


def test_items_and_stream_records_read_back_exactly_as_written(emulator: Emulator) -> None:
    # Given a table with a stream, and an item of every attribute type written to it
    dynamodb, streams = clients(emulator)
    name = streamed_table(dynamodb)
    before = int(time.time())
    dynamodb.put_item(TableName=name, Item=ITEM)
    dynamodb.update_item(
        TableName=name,
        Key={"k": ITEM["k"]},
        UpdateExpression="SET flag = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    # When it is read back, and its stream records
    got = dynamodb.get_item(TableName=name, Key={"k": ITEM["k"]})["Item"]
    absent = dynamodb.get_item(TableName=name, Key={"k": {"S": "none"}})
    queried = dynamodb.query(
        TableName=name,
        KeyConditionExpression="k = :k",
        ExpressionAttributeValues={":k": ITEM["k"]},
        Limit=1,
    )
    inserted, modified = StreamReader(dynamodb, name, streams).poll()
    # Then botocore reads exactly what was written: the item, and each record's images
    assert got == {**ITEM, "flag": {"BOOL": True}}
    assert "Item" not in absent
    assert queried["Items"] == [got] and queried["Count"] == 1
    assert inserted["eventName"] == "INSERT" and inserted["dynamodb"]["NewImage"] == ITEM
    assert modified["dynamodb"]["OldImage"] == ITEM
    assert modified["dynamodb"]["NewImage"] == got
    assert modified["dynamodb"]["Keys"] == {"k": ITEM["k"]}
    # And a record's creation time is epoch seconds, as Lambda delivers it
    created = inserted["dynamodb"]["ApproximateCreationDateTime"]
    assert before - 1 <= created <= time.time() + 1
    # And these answers took the plain path
    import importlib

    for module, owner, method in PLAIN_ANSWERS:
        handler = getattr(importlib.import_module(module), owner)
        assert getattr(getattr(handler, method), "plain", False)


def test_errors_are_still_moto_s(emulator: Emulator) -> None:
    # Given a read of a table that does not exist, and a key of the wrong shape
    dynamodb, _ = clients(emulator)
    # Then the answers are the service's errors, as before
    with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.get_item(TableName="no-such-table", Key={"k": {"S": "x"}})


def test_a_failed_transaction_leaves_no_stream_record_and_backups_share_the_records(
    emulator: Emulator,
) -> None:
    """moto backs up a table before each transaction with a deep copy; the emulator's backup
    shares the (immutable) stream records, so a transaction's cost does not grow with every
    record the stream ever had, while a failed one still leaves no record behind."""
    import copy

    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    dynamodb, _ = clients(emulator)
    name = streamed_table(dynamodb)
    # Given a stream with records
    for n in range(5):
        dynamodb.put_item(TableName=name, Item={"k": {"S": f"item-{n}"}})

    def shard(table: Any) -> Any:
        assert table.stream_shard is not None
        return table.stream_shard

    def records() -> list[str]:
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[name]
        return [r.record["eventID"] for r in shard(table).items]

    before = records()
    # When a transaction writes one item, then fails on its second's condition
    fail_a_transaction(dynamodb, name, writing="new")
    # Then neither the item nor a stream record of it remains
    assert "Item" not in dynamodb.get_item(TableName=name, Key={"k": {"S": "new"}})
    assert records() == before
    # And a successful transaction adds its record
    dynamodb.transact_write_items(
        TransactItems=[{"Put": {"TableName": name, "Item": {"k": {"S": "kept"}}}}]
    )
    assert len(records()) == len(before) + 1
    # And the backup a transaction takes shares the records instead of copying them
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[name]
    backup = copy.deepcopy(table)
    assert shard(backup).items is not shard(table).items
    pairs = zip(shard(backup).items, shard(table).items, strict=True)
    assert all(a is b for a, b in pairs)
    assert shard(backup).table is backup


def test_the_emulator_keeps_only_the_newest_shard_iterators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto kept every shard iterator it issued, each holding the table as it was; the
    emulator keeps the newest few (here 5), and a poller reading with fresh ones still works."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    from claude_jobs_tools.local import emulator as emulator_module

    monkeypatch.setattr(emulator_module, "MAX_SHARD_ITERATORS", 5)
    emulator = emulator_module.Emulator().start()
    try:
        dynamodb, streams = clients(emulator)
        name = streamed_table(dynamodb)
        reader = StreamReader(dynamodb, name, streams)
        # Given a poller that polls many times (two iterators a poll)
        seen = []
        for n in range(12):
            dynamodb.put_item(TableName=name, Item={"k": {"S": f"item-{n}"}})
            seen += [r["dynamodb"]["Keys"]["k"]["S"] for r in reader.poll()]
        # Then it read every record once, and the emulator holds only the newest iterators
        assert seen == [f"item-{n}" for n in range(12)]
        backend = dynamodbstreams_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        assert 0 < len(backend.shard_iterators) <= 5
    finally:
        emulator.stop()


def test_the_emulator_lists_a_service_s_actions_once(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto found each request's action among its response class's functions, listed anew
    (`inspect.getmembers` over the whole class) for every request; the emulator lists them
    once per class, and every action still answers."""
    import inspect

    # Given a table the emulator has served actions for
    dynamodb, _ = clients(emulator)
    name = streamed_table(dynamodb)
    dynamodb.put_item(TableName=name, Item={"k": {"S": "a"}})
    listed: list[object] = []
    members = inspect.getmembers

    def listing(*args: Any, **kwargs: Any) -> Any:
        listed.append(args[0])
        return members(*args, **kwargs)

    monkeypatch.setattr(inspect, "getmembers", listing)
    # When the same actions are served again
    for _ in range(3):
        dynamodb.put_item(TableName=name, Item={"k": {"S": "a"}, "n": {"N": "1"}})
        assert dynamodb.get_item(TableName=name, Key={"k": {"S": "a"}})["Item"]["n"] == {"N": "1"}
        assert (
            dynamodb.query(
                TableName=name,
                KeyConditionExpression="k = :k",
                ExpressionAttributeValues={":k": {"S": "a"}},
            )["Count"]
            == 1
        )
    # Then no class was listed again
    assert listed == []


def test_a_poller_keeps_its_shard_iterator_across_polls_and_failed_transactions(
    emulator: Emulator,
) -> None:
    """The local stack's pollers read each shard with the iterator its last read returned
    (one request a poll, not two); records of a failed transaction never show, and a kept
    iterator the emulator no longer knows is replaced without losing a record."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    dynamodb, streams = clients(emulator)
    name = streamed_table(dynamodb)
    reader = StreamReader(dynamodb, name, streams, keep_iterators=True)
    seen: list[str] = []

    def poll() -> None:
        seen.extend(r["dynamodb"]["Keys"]["k"]["S"] for r in reader.poll())

    # Given a poller that polls between writes, idle polls among them
    for n in range(6):
        dynamodb.put_item(TableName=name, Item={"k": {"S": f"item-{n}"}})
        poll()
        poll()
    # And a transaction that fails (its record taken back) between two more writes
    fail_a_transaction(dynamodb, name, writing="never")
    dynamodb.put_item(TableName=name, Item={"k": {"S": "item-6"}})
    poll()
    # Then it read every record once, in order, with the one iterator it took first
    assert seen == [f"item-{n}" for n in range(7)]
    assert reader.iterators_taken == 1
    # When the emulator forgets every iterator (as AWS expires them)
    dynamodbstreams_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].shard_iterators.clear()
    dynamodb.put_item(TableName=name, Item={"k": {"S": "item-7"}})
    poll()
    # Then the poller takes a fresh one after the last record it delivered, and misses nothing
    assert seen == [f"item-{n}" for n in range(8)]
    assert reader.iterators_taken == 2

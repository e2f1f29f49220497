"""The emulator's plain answers (`emulator.plain_answers`): `GetItem` and the stream's
`GetRecords` are written as the JSON they already are instead of through moto's generic
serializer; botocore reads back exactly what was written, every attribute type included."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from claude_jobs_tools.local.emulator import PLAIN_ANSWERS, Emulator
from claude_jobs_tools.local.table_stream import StreamReader

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


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    started = Emulator().start()
    try:
        yield started
    finally:
        started.stop()


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


def test_items_and_stream_records_read_back_exactly_as_written(emulator: Emulator) -> None:
    # Given a table with a stream, and an item of every attribute type written to it
    dynamodb, streams = clients(emulator)
    name = f"t-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
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
    inserted, modified = StreamReader(dynamodb, name, streams).poll()
    # Then botocore reads exactly what was written: the item, and each record's images
    assert got == {**ITEM, "flag": {"BOOL": True}}
    assert "Item" not in absent
    assert inserted["eventName"] == "INSERT" and inserted["dynamodb"]["NewImage"] == ITEM
    assert modified["dynamodb"]["OldImage"] == ITEM
    assert modified["dynamodb"]["NewImage"] == got
    assert modified["dynamodb"]["Keys"] == {"k": ITEM["k"]}
    # And a record's creation time is epoch seconds, as Lambda delivers it
    created = inserted["dynamodb"]["ApproximateCreationDateTime"]
    assert before - 1 <= created <= time.time() + 1
    # And both answers took the plain path
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

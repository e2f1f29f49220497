"""The emulator's JSON services skip moto's Flask routing (`emulator.direct_handlers`).

The same DynamoDB, DynamoDB Streams, SQS and EventBridge calls, through real botocore clients,
against the emulator's chain with and without the direct path (both in process, on one moto):
every answer, every refusal and the answers' headers are the same (ids and times aside), and
the direct path serves those services without Flask while S3 still goes through it. (The
stack-key check stands in front of it: `test_emulator_auth.py` refuses foreign keys and wrong
secrets for these services through the emulator's whole chain.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
from botocore.exceptions import ClientError
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from claude_jobs_tools.local import in_process
from claude_jobs_tools.local.emulator import (
    Emulator,
    direct_handlers,
    require_stack_key,
    serialize_dynamodb,
)
from tests.integration.test_in_process import client

PLAIN_URL, DIRECT_URL = "http://127.0.0.1:1", "http://127.0.0.1:2"
#: Headers whose values differ from one answer to the next.
VARYING = {"date", "x-amzn-requestid", "x-amz-crc32", "content-length"}
#: Answer fields made fresh by each call (ids, times, the stream's positions; a stream record's
#: size counts the digits of its creation time, a float whose length varies).
FRESH = {
    "MessageId",
    "ReceiptHandle",
    "EventId",
    "eventID",
    "SequenceNumber",
    "StartingSequenceNumber",
    "ApproximateCreationDateTime",
    "SizeBytes",
    "ShardIterator",
    "NextShardIterator",
    "StreamArn",
    "LatestStreamArn",
    "StreamLabel",
    "LatestStreamLabel",
    "ShardId",
    "CreationRequestDateTime",
    "CreationDateTime",
}


def _settled(value: Any) -> Any:
    """`value` with its FRESH fields blanked."""
    if isinstance(value, dict):
        return {k: "" if k in FRESH else _settled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_settled(v) for v in value]
    return value


def _recorder(answers: list[Any], name: str) -> Callable[..., Any]:
    """A call made and its answer (or refusal) kept: status, header names, `name` generic."""

    def call(operation: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            answer = operation(**kwargs)
        except ClientError as exc:
            meta = exc.response["ResponseMetadata"]
            kept = {k: v for k, v in exc.response.items() if k != "ResponseMetadata"}
            answer = {}
        else:
            meta = answer["ResponseMetadata"]
            kept = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
        kept["status"] = meta["HTTPStatusCode"]
        kept["headers"] = sorted(
            (header, "" if header in VARYING else value)
            for header, value in meta["HTTPHeaders"].items()
        )
        text = json.dumps(kept, default=str).replace(name, "NAME")
        for url in (PLAIN_URL, DIRECT_URL):
            text = text.replace(url, "URL")
        answers.append(_settled(json.loads(text)))
        return answer

    return call


class FlaskCalls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = flask.Flask.wsgi_app

        def counting(app: Any, environ: Any, start_response: Any) -> Any:
            self.count += 1
            return original(app, environ, start_response)

        monkeypatch.setattr(flask.Flask, "wsgi_app", counting)


@pytest.fixture
def both(emulator: Emulator) -> Iterator[None]:
    """The emulator's chain without the direct path at PLAIN_URL, with it at DIRECT_URL."""
    chains = {
        PLAIN_URL: lambda moto: moto,
        DIRECT_URL: direct_handlers,
    }
    servers = [
        in_process.serve(
            url,
            require_stack_key(
                serialize_dynamodb(wrap(DomainDispatcherApplication(create_backend_app))),
                emulator.credentials,
            ),
        )
        for url, wrap in chains.items()
    ]
    try:
        yield
    finally:
        for server in servers:
            in_process.stop(server)


def _scenario(dynamodb: Any, table: str) -> list[Any]:
    """A table's life: each call's answer (or refusal) with its status and header names."""
    answers: list[Any] = []
    call = _recorder(answers, table)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "kind", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-kind",
                "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(3):
        item = {"pk": {"S": f"k{n} ü/"}, "kind": {"S": "odd" if n % 2 else "even"}}
        call(dynamodb.put_item, TableName=table, Item={**item, "n": {"N": str(n)}})
    key = {"pk": {"S": "k1 ü/"}}
    call(dynamodb.get_item, TableName=table, Key=key, ConsistentRead=True)
    call(dynamodb.get_item, TableName=table, Key={"pk": {"S": "none"}})
    call(
        dynamodb.query,
        TableName=table,
        KeyConditionExpression="pk = :k",
        ExpressionAttributeValues={":k": key["pk"]},
    )
    call(
        dynamodb.query,
        TableName=table,
        IndexName="by-kind",
        KeyConditionExpression="kind = :k",
        ExpressionAttributeValues={":k": {"S": "even"}},
    )
    call(dynamodb.scan, TableName=table, Limit=2)
    call(
        dynamodb.update_item,
        TableName=table,
        Key=key,
        UpdateExpression="SET n = n + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="ALL_NEW",
    )
    call(
        dynamodb.put_item,
        TableName=table,
        Item={**key, "kind": {"S": "odd"}},
        ConditionExpression="attribute_not_exists(pk)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    call(
        dynamodb.transact_write_items,
        TransactItems=[
            {
                "Update": {
                    "TableName": table,
                    "Key": key,
                    "UpdateExpression": "SET n = :zero",
                    "ExpressionAttributeValues": {":zero": {"N": "0"}},
                }
            },
            {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": {"pk": {"S": "k0 ü/"}},
                    "ConditionExpression": "n = :nine",
                    "ExpressionAttributeValues": {":nine": {"N": "9"}},
                }
            },
        ],
    )
    call(dynamodb.batch_get_item, RequestItems={table: {"Keys": [key, {"pk": {"S": "k2 ü/"}}]}})
    call(dynamodb.delete_item, TableName=table, Key=key, ReturnValues="ALL_OLD")
    call(dynamodb.update_item, TableName=table, Key=key, UpdateExpression="SET")
    call(dynamodb.get_item, TableName=f"{table}-missing", Key=key)
    return answers


def _streams_queues_and_events(credentials: Any, url: str, name: str) -> list[Any]:
    """A table's stream read, a queue's message sent, received and deleted, an event put."""
    answers: list[Any] = []
    call = _recorder(answers, name)
    dynamodb, streams = (
        client(url, "dynamodb", credentials),
        client(url, "dynamodbstreams", credentials),
    )
    sqs, events = client(url, "sqs", credentials), client(url, "events", credentials)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    arn = dynamodb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    described = call(streams.describe_stream, StreamArn=arn)
    shard = described["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = call(
        streams.get_shard_iterator, StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    call(streams.get_records, ShardIterator=iterator)
    queue = call(sqs.create_queue, QueueName=name)["QueueUrl"]
    call(sqs.send_message, QueueUrl=queue, MessageBody="hello ü")
    received = call(sqs.receive_message, QueueUrl=queue, WaitTimeSeconds=0)
    call(sqs.delete_message, QueueUrl=queue, ReceiptHandle=received["Messages"][0]["ReceiptHandle"])
    call(sqs.receive_message, QueueUrl=queue, WaitTimeSeconds=0)
    call(sqs.get_queue_attributes, QueueUrl=f"{queue}-missing", AttributeNames=["All"])
    entry = {"Source": "claude-jobs.test", "DetailType": name, "Detail": '{"job": "j-1"}'}
    call(events.put_events, Entries=[entry])
    call(events.put_events, Entries=[{**entry, "EventBusName": f"{name}-missing"}])
    return answers


def test_dynamodb_answers_the_same_with_and_without_flask(
    emulator: Emulator, both: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client of each chain, and Flask's calls counted
    credentials = emulator.credentials
    run = uuid.uuid4().hex[:8]
    plain = _scenario(client(PLAIN_URL, "dynamodb", credentials), f"plain-{run}")
    flask_calls = FlaskCalls(monkeypatch)
    # When the direct chain runs the same scenario
    direct = _scenario(client(DIRECT_URL, "dynamodb", credentials), f"direct-{run}")
    # Then each answer is the same, refusals and headers included
    assert len(direct) == len(plain) == 15
    for step, (expected, got) in enumerate(zip(plain, direct, strict=True)):
        assert got == expected, f"step {step}"
    assert [a["status"] for a in plain].count(400) == 4
    # and no DynamoDB request went through Flask
    assert flask_calls.count == 0


def test_streams_queues_and_events_answer_the_same_with_and_without_flask(
    emulator: Emulator, both: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client of each chain, and Flask's calls counted
    credentials = emulator.credentials
    run = uuid.uuid4().hex[:8]
    plain = _streams_queues_and_events(credentials, PLAIN_URL, f"plain-{run}")
    flask_calls = FlaskCalls(monkeypatch)
    # When the direct chain runs the same calls
    direct = _streams_queues_and_events(credentials, DIRECT_URL, f"direct-{run}")
    # Then each answer is the same, refusals and headers included
    assert len(direct) == len(plain) == 11
    for step, (expected, got) in enumerate(zip(plain, direct, strict=True)):
        assert got == expected, f"step {step}"
    assert [a["status"] for a in plain].count(400) == 2  # the missing queue, the missing bus
    assert plain[2]["Records"][0]["eventName"] == "INSERT"
    # and none of them went through Flask, while S3 still does
    assert flask_calls.count == 0
    client(DIRECT_URL, "s3", credentials).list_buckets()
    assert flask_calls.count == 1

"""The local stack's API Gateway front and SQS consumer, with stand-in functions.

The front is served over real HTTP; its functions are tiny handler modules written by the test
(they record the events they get), so these tests pin what API Gateway does around a function:
routing, the TOKEN authorizer, the proxy event, gateway responses. The consumer runs against a
moto server with a short visibility timeout, so redelivery and the redrive to the DLQ happen.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from claude_jobs.definitions import FUNCTIONS, ROUTES
from claude_jobs_tools.local.front import ApiGatewayFront, policy_allows, serve
from claude_jobs_tools.local.runtime import FunctionPool
from claude_jobs_tools.local.workers import QueueConsumer, failed_ids
from tests.support.servers import serving

AUTHORIZER = """
import json, os
def lambda_handler(event, context):
    with open(os.environ["FRONT_TEST_LOG"], "a") as log:
        log.write(json.dumps({"fn": "authorizer", "event": event}) + "\\n")
    token = event["authorizationToken"]
    if token == "Bearer good-key-0123456789":
        effect = "Allow"
    elif token == "Bearer denied-key-0123456789":
        effect = "Deny"
    elif token == "Bearer broken-key-0123456789":
        raise RuntimeError("boom")
    else:
        raise Exception("Unauthorized")
    arn = event["methodArn"].split("/")[0] + "/*"
    return {
        "principalId": "key-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": arn}]},
        "context": {"tenant_id": "t1", "key_id": "key-1", "admin": False, "n": 3},
    }
"""

ECHO = """
import json, os
CALLS = []
def lambda_handler(event, context):
    CALLS.append(1)
    with open(os.environ["FRONT_TEST_LOG"], "a") as log:
        log.write(json.dumps({"fn": "%s", "event": event, "request_id": context.aws_request_id,
                              "remaining": context.get_remaining_time_in_millis()}) + "\\n")
    if event["path"].endswith("/crash"):
        raise RuntimeError("crashed")
    return {
        "statusCode": 202 if event["httpMethod"] == "POST" else 200,
        "headers": {"Content-Type": "application/json", "ETag": '"v1"'},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps({"fn": "%s", "warm_calls": len(CALLS)}),
    }
"""


#: The functions the front invokes: the authorizer and those serving routes.
DEFINED_API = ("authorizer", *sorted({route.function for route in ROUTES}))


@pytest.fixture
def front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "calls.jsonl"
    log.touch()
    monkeypatch.setenv("FRONT_TEST_LOG", str(log))
    functions = tmp_path / "functions"
    for name, code in (
        ("authorizer", AUTHORIZER),
        ("submit", ECHO % ("submit", "submit")),
        ("status", ECHO % ("status", "status")),
    ):
        (functions / name).mkdir(parents=True)
        (functions / name / "handler.py").write_text(textwrap.dedent(code))
    pools = {
        name: FunctionPool(FUNCTIONS[name], functions)
        for name in ("authorizer", "submit", "status")
    }
    with serving(serve(ApiGatewayFront(pools), "127.0.0.1", 0)) as server:
        yield server.url, log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_an_authorized_request_reaches_its_function_with_a_rest_proxy_event(
    front: tuple[str, Path],
) -> None:
    url, log = front
    # When a request with a valid key and a query reaches a templated route
    response = httpx.get(
        f"{url}/v1/jobs/abc-123?wait=5&x=1&x=2",
        headers={"Authorization": "Bearer good-key-0123456789"},
    )
    # Then the function's response comes back verbatim, repeated headers included
    assert response.status_code == 200
    assert response.json() == {"fn": "status", "warm_calls": 1}
    assert response.headers["etag"] == '"v1"'
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    # And the authorizer got a TOKEN event for the method ARN, then the function a proxy event
    authorizer_call, function_call = calls(log)
    assert authorizer_call["event"] == {
        "type": "TOKEN",
        "authorizationToken": "Bearer good-key-0123456789",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:local/dev/GET/v1/jobs/abc-123",
    }
    event = function_call["event"]
    assert event["resource"] == "/v1/jobs/{job_id}"
    assert event["path"] == "/v1/jobs/abc-123"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"job_id": "abc-123"}
    assert event["queryStringParameters"] == {"wait": "5", "x": "2"}
    assert event["multiValueQueryStringParameters"] == {"wait": ["5"], "x": ["1", "2"]}
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["authorizer"]["principalId"] == "key-1"
    assert context["authorizer"]["tenant_id"] == "t1"
    # API Gateway hands context values on as strings
    assert context["authorizer"]["admin"] == "false"
    assert context["authorizer"]["n"] == "3"
    assert context["resourcePath"] == "/v1/jobs/{job_id}"
    assert context["requestId"] == response.headers["x-amzn-requestid"]
    assert 0 < function_call["remaining"] <= FUNCTIONS["status"].timeout_seconds * 1000


def test_every_route_of_the_definition_table_reaches_its_function(
    front: tuple[str, Path],
) -> None:
    url, log = front
    for route in ROUTES:
        # When a request is made on the route (with a key where the route needs one)
        path = re.sub(r"\{\w+\}", "p-1", route.path)
        headers = {"Authorization": "Bearer good-key-0123456789"} if route.authorized else {}
        before = len(calls(log))
        response = httpx.request(route.method, f"{url}{path}", headers=headers)
        # Then the function the table names answers it, after the authorizer if it needs one
        assert response.status_code < 300, route
        assert response.json()["fn"] == route.function
        made = calls(log)[before:]
        assert [c["fn"] for c in made] == [
            *(["authorizer"] if route.authorized else []),
            route.function,
        ]
        assert made[-1]["event"]["resource"] == route.path


def test_a_body_is_passed_as_text_and_health_needs_no_key(front: tuple[str, Path]) -> None:
    url, log = front
    # When a JSON body is posted, Then the function gets it as the event's body
    posted = httpx.post(
        f"{url}/v1/jobs",
        content=b'{"prompt":"hi"}',
        headers={"Authorization": "Bearer good-key-0123456789"},
    )
    assert posted.status_code == 202
    assert calls(log)[-1]["event"]["body"] == '{"prompt":"hi"}'
    # And health is served without an authorizer call and without authorizer context
    before = len(calls(log))
    assert httpx.get(f"{url}/v1/health").status_code == 200
    health_calls = calls(log)[before:]
    assert [c["fn"] for c in health_calls] == ["status"]
    assert "authorizer" not in health_calls[0]["event"]["requestContext"]


@pytest.mark.parametrize(
    ("headers", "status", "authorizer_called"),
    [
        ({}, 401, False),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, False),  # fails the validation regex
        ({"Authorization": "Bearer short"}, 401, False),
        ({"Authorization": "Bearer wrong-key-0123456789"}, 401, True),
        ({"Authorization": "Bearer denied-key-0123456789"}, 401, True),
        ({"Authorization": "Bearer broken-key-0123456789"}, 500, True),
    ],
)
def test_refused_requests_get_gateway_problems_and_never_reach_the_function(
    front: tuple[str, Path], headers: dict[str, str], status: int, authorizer_called: bool
) -> None:
    url, log = front
    response = httpx.get(f"{url}/v1/jobs", headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["x-amzn-requestid"]
    assert {"type", "title", "detail"} <= problem.keys()
    assert [c["fn"] for c in calls(log)] == (["authorizer"] if authorizer_called else [])


def test_unknown_routes_wrong_methods_and_crashes(front: tuple[str, Path]) -> None:
    url, _ = front
    auth = {"Authorization": "Bearer good-key-0123456789"}
    missing = httpx.get(f"{url}/v2/nothing", headers=auth)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = httpx.delete(f"{url}/v1/jobs/abc", headers=auth)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"
    crashed = httpx.get(f"{url}/v1/jobs/crash", headers=auth)
    assert crashed.status_code == 502
    assert crashed.json()["status"] == 502


def test_twenty_concurrent_requests_are_all_answered(front: tuple[str, Path]) -> None:
    url, _ = front
    # When 20 clients call at once
    results: list[int] = []

    def call() -> None:
        results.append(httpx.get(f"{url}/v1/health", timeout=30).status_code)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every one is answered
    assert results == [200] * 20


def test_policy_evaluation() -> None:
    arn = "arn:aws:execute-api:us-east-1:123456789012:local/dev/GET/v1/jobs"

    def policy(*statements: tuple[str, str]) -> dict[str, Any]:
        return {
            "Statement": [
                {"Effect": e, "Action": "execute-api:Invoke", "Resource": r} for e, r in statements
            ]
        }

    assert policy_allows(policy(("Allow", "arn:aws:execute-api:*:*:local/dev/*")), arn)
    assert not policy_allows(policy(("Allow", "arn:aws:execute-api:*:*:local/dev/POST/*")), arn)
    assert not policy_allows(policy(("Allow", "*"), ("Deny", arn)), arn)
    assert not policy_allows({"Statement": []}, arn)


def test_batch_item_failures_parsing() -> None:
    assert failed_ids(None, {"m1"}) == set()
    assert failed_ids({"batchItemFailures": []}, {"m1"}) == set()
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "m1"}]}, {"m1"}) == {"m1"}
    # Malformed answers fail the whole batch, as in Lambda
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "zz"}]}, {"m1"}) is None
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, {"m1"}) is None
    assert failed_ids("ok", {"m1"}) is None


WORKER = """
import json, os
def lambda_handler(event, context):
    (record,) = event["Records"]
    with open(os.environ["FRONT_TEST_LOG"], "a") as log:
        log.write(json.dumps(record) + "\\n")
    body = json.loads(record["body"])
    if body["action"] == "raise":
        raise RuntimeError("worker crashed")
    if body["action"] == "fail":
        return {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    return {"batchItemFailures": []}
"""


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield f"http://{host}:{port}"
    server.stop()


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_the_consumer_deletes_successes_and_redrives_failures_to_the_dlq(
    moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "records.jsonl"
    log.touch()
    monkeypatch.setenv("FRONT_TEST_LOG", str(log))
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "handler.py").write_text(textwrap.dedent(WORKER))
    # Given a queue that redrives to a DLQ after 2 receives, with a 1 s visibility timeout
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName="jobs",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # And one message that succeeds, one the function reports failed, one that makes it raise
    for action in ("ok", "fail", "raise"):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"action": action}))
    pool = FunctionPool(FUNCTIONS["worker"], tmp_path)
    consumer = QueueConsumer(pool, queue, queue_arn, count=2, poll_seconds=1)
    # When the consumer runs until the failing two have been received twice each
    consumer.start()
    try:

        def receives() -> dict[str, int]:
            seen: dict[str, int] = {}
            for line in log.read_text().splitlines():
                action = json.loads(json.loads(line)["body"])["action"]
                seen[action] = seen.get(action, 0) + 1
            return seen

        wait_for(lambda: receives().get("fail", 0) >= 2 and receives().get("raise", 0) >= 2)
        # Then both end in the DLQ, and the success was received once and deleted
        moved: list[str] = []

        def drain_dlq() -> bool:
            for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", []):
                moved.append(json.loads(m["Body"])["action"])
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
            return len(moved) >= 2

        wait_for(drain_dlq)
    finally:
        assert consumer.stop(grace_seconds=5) == 0
    assert sorted(moved) == ["fail", "raise"]
    assert receives() == {"ok": 1, "fail": 2, "raise": 2}
    # And the records were real-shaped SQS event records
    record = json.loads(log.read_text().splitlines()[0])
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"messageId", "receiptHandle", "md5OfBody", "awsRegion"} <= record.keys()


def test_a_message_whose_function_raised_comes_back_soon_not_after_the_visibility_timeout(
    moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "records.jsonl"
    log.touch()
    monkeypatch.setenv("FRONT_TEST_LOG", str(log))
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "handler.py").write_text(textwrap.dedent(WORKER))
    # Given a queue with a 5-minute visibility timeout and a message that makes the function
    # raise (as a worker that fails to start does)
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="raised", Attributes={"VisibilityTimeout": "300"})[
        "QueueUrl"
    ]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"action": "raise"}))
    consumer = QueueConsumer(
        FunctionPool(FUNCTIONS["worker"], tmp_path), queue, queue_arn, count=1, poll_seconds=1
    )
    # When the consumer runs
    started = time.monotonic()
    consumer.start()
    try:
        # Then the message is received again within seconds, as a Lambda retry would be
        wait_for(lambda: len(log.read_text().splitlines()) >= 2, timeout=15)
    finally:
        assert consumer.stop(grace_seconds=5) == 0
    assert time.monotonic() - started < 15
    counts = [
        json.loads(line)["attributes"]["ApproximateReceiveCount"]
        for line in log.read_text().splitlines()[:2]
    ]
    assert counts == ["1", "2"]


def test_the_stream_reader_keeps_reading_after_a_failed_transaction(moto_server: str) -> None:
    from botocore.exceptions import ClientError

    from claude_jobs_tools.local.table_stream import StreamReader

    # Given a table with a stream, and a poller that has read its first record
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    poller = StreamReader(dynamodb, "t")
    dynamodb.put_item(TableName="t", Item={"k": {"S": "first"}})
    assert [r["dynamodb"]["Keys"]["k"]["S"] for r in poller.poll()] == ["first"]
    # When a transaction fails (the emulator then restores a copy of the table)
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": "t",
                        "Item": {"k": {"S": "first"}},
                        "ConditionExpression": "attribute_not_exists(k)",
                    }
                }
            ]
        )
    dynamodb.put_item(TableName="t", Item={"k": {"S": "second"}})
    # Then the next write still reaches the poller, once, in Lambda's record shape
    records = poller.poll()
    assert [r["dynamodb"]["Keys"]["k"]["S"] for r in records] == ["second"]
    assert records[0]["eventSourceARN"].startswith("arn:aws:dynamodb:")
    assert poller.poll() == []


def test_the_emulator_keeps_concurrent_writes_across_failed_transactions() -> None:
    """moto alone loses some of these writes (a failed transaction puts back a copy of the
    table); the local stack's emulator serves DynamoDB one request at a time."""
    from claude_jobs_tools.local.emulator import Emulator

    emulator = Emulator().start()
    try:
        client_args: dict[str, Any] = {
            "endpoint_url": emulator.url,
            "region_name": "us-east-1",
            "aws_access_key_id": emulator.credentials.access_key_id,
            "aws_secret_access_key": emulator.credentials.secret_access_key,
        }
        dynamodb = boto3.client("dynamodb", **client_args)
        table = f"t-{uuid.uuid4().hex[:8]}"  # moto's state is per process: a fresh table
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName=table, Item={"k": {"S": "taken"}})

        # Given threads whose transactions fail while other threads write items
        def fail_transactions() -> None:
            client = boto3.client("dynamodb", **client_args)
            for _ in range(60):
                with pytest.raises(client.exceptions.TransactionCanceledException):
                    client.transact_write_items(
                        TransactItems=[
                            {
                                "Put": {
                                    "TableName": table,
                                    "Item": {"k": {"S": "taken"}},
                                    "ConditionExpression": "attribute_not_exists(k)",
                                }
                            }
                        ]
                    )

        def write(worker: int) -> None:
            client = boto3.client("dynamodb", **client_args)
            for n in range(40):
                client.put_item(TableName=table, Item={"k": {"S": f"{worker}-{n}"}})

        threads = [threading.Thread(target=fail_transactions) for _ in range(3)]
        threads += [threading.Thread(target=write, args=(w,)) for w in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then every write is there
        count = dynamodb.scan(TableName=table, Select="COUNT")["Count"]
        assert count == 1 + 3 * 40
    finally:
        emulator.stop()

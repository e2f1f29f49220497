"""The local stack's own AWS calls reach its emulator without a socket (`in_process.py`).

Through the real emulator (moto, its authentication, the DynamoDB lock) and real botocore
clients: the answers are the ones HTTP gives, a foreign key is refused as over HTTP, a caller
that dies mid-call does not cut the emulator's work short, and a whole job through the stack
opens no connection to the emulator.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import urllib3
from botocore.exceptions import ClientError

from claude_jobs_tools.local import in_process
from claude_jobs_tools.local.emulator import Emulator, StackCredentials
from claude_jobs_tools.local.runtime import InvocationKilled, kill_invocation

_RUN = uuid.uuid4().hex[:8]


def client(url: str, service: str, credentials: StackCredentials) -> Any:
    """A client of a session of its own, as each of the stack's containers makes."""
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name="us-east-1",
    )
    return session.client(service, endpoint_url=url)  # type: ignore[call-overload]


class Connections:
    """Counts the HTTP connections botocore's clients open in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        original = urllib3.connection.HTTPConnection._new_conn

        def counting(conn: Any) -> Any:
            self.opened += 1
            return original(conn)

        monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", counting)


@pytest.fixture
def served(emulator: Emulator) -> Iterator[in_process.InProcessServer]:
    server = in_process.serve(emulator.url, emulator.app)
    try:
        yield server
    finally:
        in_process.stop(server)


def _calls(url: str, credentials: StackCredentials) -> list[Any]:
    """The same calls of three services, answered: what each gives back."""
    dynamodb = client(url, "dynamodb", credentials)
    s3 = client(url, "s3", credentials)
    sqs = client(url, "sqs", credentials)
    table, bucket = f"t-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"pk": {"S": "a b/ü"}, "n": {"N": "1"}, "blob": {"B": b"\x00\xff"}}
    dynamodb.put_item(TableName=table, Item=item)
    answers: list[Any] = [dynamodb.get_item(TableName=table, Key={"pk": item["pk"]})["Item"]]
    with pytest.raises(ClientError) as refused:
        dynamodb.put_item(
            TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)"
        )
    answers.append(refused.value.response["Error"]["Code"])
    s3.create_bucket(Bucket=bucket)
    body = b"a large body " * 50_000
    s3.put_object(Bucket=bucket, Key="dir/a key+1.txt", Body=body)
    answers.append(s3.head_object(Bucket=bucket, Key="dir/a key+1.txt")["ContentLength"])
    answers.append(s3.get_object(Bucket=bucket, Key="dir/a key+1.txt")["Body"].read() == body)
    answers.append([o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]])
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="missing")
    answers.append(missing.value.response["Error"]["Code"])
    queue = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="ü" * 300)
    received = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    answers.append([m["Body"] for m in received])
    return answers


def test_a_served_emulator_answers_as_over_http_without_a_connection(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same calls answered over HTTP
    over_http = _calls(emulator.url, emulator.credentials)
    connections = Connections(monkeypatch)
    # When the emulator is served in process and they are made again
    server = in_process.serve(emulator.url, emulator.app)
    try:
        in_process_answers = _calls(emulator.url, emulator.credentials)
    finally:
        in_process.stop(server)
    # Then the answers are the same (errors included), and no connection was opened
    assert in_process_answers == over_http
    assert over_http[1] == "ConditionalCheckFailedException"
    assert connections.opened == 0
    assert server.calls >= 12


@pytest.mark.parametrize(
    "foreign",
    [StackCredentials("testing", "testing"), StackCredentials(f"AKIA{_RUN.upper()}", "x" * 40)],
    ids=["the SDKs' test key", "another key"],
)
def test_a_foreign_key_is_refused_in_process_too(
    emulator: Emulator, served: in_process.InProcessServer, foreign: StackCredentials
) -> None:
    # Given a secret written with the stack's key
    name = f"in-process-{uuid.uuid4().hex[:8]}"
    client(emulator.url, "secretsmanager", emulator.credentials).create_secret(
        Name=name, SecretString="sentinel"
    )
    # When a client of this process asks for it with another key
    with pytest.raises(ClientError) as refused:
        client(emulator.url, "secretsmanager", foreign).get_secret_value(SecretId=name)
    # Then it is refused as over HTTP, and so is the right key id with a wrong secret
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    wrong_secret = StackCredentials(emulator.credentials.access_key_id, "x" * 40)
    with pytest.raises(ClientError) as forged:
        client(emulator.url, "secretsmanager", wrong_secret).get_secret_value(SecretId=name)
    assert forged.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert served.calls >= 3


def test_a_caller_killed_mid_call_leaves_the_emulator_to_finish() -> None:
    # Given an application that takes its time over a call, then records it as done
    began, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        began.set()
        release.wait(10)
        finished.set()
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
        return [b"{}"]

    url = "http://127.0.0.1:9"  # nothing listens there: only the in-process path answers
    server = in_process.serve(url, slow)
    outcome: list[BaseException] = []

    def caller() -> None:
        try:
            dynamodb = client(url, "dynamodb", StackCredentials("AKIAKILLED", "x" * 40))
            dynamodb.describe_limits()
        except BaseException as exc:  # the kill is what this test expects
            outcome.append(exc)

    thread = threading.Thread(target=caller, daemon=True)
    try:
        thread.start()
        assert began.wait(10)
        # When the caller is killed while the call is being served
        assert thread.ident is not None and kill_invocation(thread.ident)
        time.sleep(0.3)
        release.set()
        thread.join(10)
        # Then the caller died with the kill, and the application still finished the call
        assert finished.wait(10)
        assert len(outcome) == 1 and isinstance(outcome[0], InvocationKilled)
    finally:
        release.set()
        in_process.stop(server)


def test_an_application_that_raises_answers_500_as_over_http() -> None:
    from botocore.config import Config
    from werkzeug.serving import make_server

    from claude_jobs_tools.local.keep_alive import KeepAlive
    from tests.support.servers import serving

    # Given an application that raises on every call, served over HTTP as the emulator is
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("a bug in the emulator")

    http = make_server("127.0.0.1", 0, broken, threaded=True, request_handler=KeepAlive)
    http.daemon_threads = True  # type: ignore[attr-defined]
    once = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    credentials = StackCredentials("AKIABROKEN", "x" * 40)
    answers = []
    with serving(http):
        url = f"http://127.0.0.1:{http.server_port}"
        for in_process_too in (False, True):
            server = in_process.serve(url, broken) if in_process_too else None
            try:
                dynamodb = boto3.session.Session(
                    aws_access_key_id=credentials.access_key_id,
                    aws_secret_access_key=credentials.secret_access_key,
                    region_name="us-east-1",
                ).client("dynamodb", endpoint_url=url, config=once)
                # When a client of this process calls it
                with pytest.raises(ClientError) as failed:
                    dynamodb.describe_limits()
                answers.append(failed.value.response["ResponseMetadata"]["HTTPStatusCode"])
            finally:
                if server is not None:
                    assert server.calls == 1
                    in_process.stop(server)
    # Then the caller gets the service's 500, over HTTP and in process alike
    assert answers == [500, 500]


def test_once_stopped_calls_go_over_http_again(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client made while the emulator is served in process
    server = in_process.serve(emulator.url, emulator.app)
    s3 = client(emulator.url, "s3", emulator.credentials)
    s3.list_buckets()
    assert server.calls == 1
    connections = Connections(monkeypatch)
    # When the in-process serving stops
    in_process.stop(server)
    # Then the same client reaches the emulator over HTTP
    s3.list_buckets()
    assert connections.opened == 1
    assert server.calls == 1


def test_a_client_of_another_endpoint_is_not_served(
    emulator: Emulator, served: in_process.InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another emulator, not served in process
    other = Emulator().start()
    try:
        connections = Connections(monkeypatch)
        # When a client of it makes a call
        client(other.url, "s3", other.credentials).list_buckets()
    finally:
        other.stop()
    # Then it went over HTTP, and the served emulator saw nothing
    assert connections.opened == 1
    assert served.calls == 0


def test_a_job_through_the_stack_opens_no_connection_to_its_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from claude_jobs_client import Client
    from claude_jobs_tools.local.stack import LocalStack, StackConfig

    # Given a local stack in this process (the offline stand-in model), its environments warm
    key = f"cjk_in_process_{_RUN}"
    stack = LocalStack(StackConfig(port=0, workers=1, dev_keys=f"in-process:{key}")).start()
    try:
        emulator_port = int(stack.moto_url.rsplit(":", 1)[1])
        with Client(stack.url, key, timeout=60) as caller:
            first = caller.submit("warm up", allowed_tools=[])["job_id"]
            assert caller.wait(first, timeout=120)["status"] == "succeeded"
            to_emulator: list[int] = []
            original = urllib3.connection.HTTPConnection._new_conn

            def counting(conn: Any) -> Any:
                if conn.port == emulator_port:
                    to_emulator.append(conn.port)
                return original(conn)

            monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", counting)
            # When a job is submitted, run by a worker and waited for
            job = caller.submit("say hello", allowed_tools=[])["job_id"]
            assert caller.wait(job, timeout=120)["status"] == "succeeded"
    finally:
        stack.stop()
    # Then none of the stack's calls (submit, worker, status, pollers) opened a connection
    assert to_emulator == []

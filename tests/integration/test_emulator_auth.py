"""The local stack's emulator serves only the key it issued to the stack (issue 9).

A real moto server over HTTP on loopback, as `claude-jobs dev` runs it: requests that are
unsigned, signed with the SDKs' default `testing` credentials, or signed with the stack's key id
but the wrong secret get 403 and no data; moto's own API is closed; presigned S3 URLs the stack
signs keep working, and only those.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from claude_jobs_tools.local.emulator import Emulator, StackCredentials

# moto's state is per process: names unique to this module.
_RUN = uuid.uuid4().hex[:8]
SECRET_NAME = f"stack-{_RUN}/anthropic-api-key"
SECRET_VALUE = f"sk-ant-sentinel-{uuid.uuid4().hex}"
BUCKET = f"stack-{_RUN}-results"
OBJECT_KEY = "results/a job/answer+1.txt"  # a space and a plus: the URL must encode them
OBJECT_BODY = b"large result " * 50_000


def client(emulator: Emulator, service: str, credentials: StackCredentials, **kw: Any) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        **kw,
    )


FOREIGN = {
    "the SDKs' default test key": StackCredentials("testing", "testing"),
    "a made-up IAM-looking key": StackCredentials("AKIAIOSFODNN7EXAMPLE", "x" * 40),
}


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    # Given the emulator, holding a secret and an object written with the stack's key
    emulator = Emulator().start()
    try:
        stack = emulator.credentials
        secrets = client(emulator, "secretsmanager", stack)
        s3 = client(emulator, "s3", stack)
        if not secrets.list_secrets(Filters=[{"Key": "name", "Values": [SECRET_NAME]}])[
            "SecretList"
        ]:
            secrets.create_secret(Name=SECRET_NAME, SecretString=SECRET_VALUE)
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key=OBJECT_KEY, Body=OBJECT_BODY)
        yield emulator
    finally:
        emulator.stop()


def test_the_stack_key_reads_and_writes_every_service_the_stack_uses(emulator: Emulator) -> None:
    stack = emulator.credentials
    # When the stack's clients call each service
    secret = client(emulator, "secretsmanager", stack).get_secret_value(SecretId=SECRET_NAME)
    queue = client(emulator, "sqs", stack).create_queue(QueueName=f"{_RUN}-jobs")["QueueUrl"]
    dynamodb = client(emulator, "dynamodb", stack)
    dynamodb.create_table(
        TableName=f"{_RUN}-jobs",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    streams = client(emulator, "dynamodbstreams", stack).list_streams()
    bus = client(emulator, "events", stack).create_event_bus(Name=f"{_RUN}-bus")
    body = client(emulator, "s3", stack).get_object(Bucket=BUCKET, Key=OBJECT_KEY)["Body"]
    # Then each answers
    assert secret["SecretString"] == SECRET_VALUE
    assert queue.endswith(f"/{_RUN}-jobs")
    assert f"{_RUN}-jobs" in dynamodb.list_tables()["TableNames"]
    assert isinstance(streams["Streams"], list)
    assert bus["EventBusArn"].endswith(f":event-bus/{_RUN}-bus")
    assert body.read() == OBJECT_BODY
    # And the key's secret never shows in its repr (logs, tracebacks)
    assert stack.secret_access_key not in repr(stack)


@pytest.mark.parametrize("who", sorted(FOREIGN))
@pytest.mark.parametrize(
    ("service", "call"),
    [
        ("secretsmanager", lambda c: c.get_secret_value(SecretId=SECRET_NAME)),
        ("secretsmanager", lambda c: c.list_secrets()),
        ("dynamodb", lambda c: c.list_tables()),
        ("sqs", lambda c: c.list_queues()),
        ("s3", lambda c: c.get_object(Bucket=BUCKET, Key=OBJECT_KEY)),
        ("events", lambda c: c.list_event_buses()),
        ("iam", lambda c: c.list_access_keys()),
    ],
)
def test_requests_signed_with_any_other_key_are_refused(
    emulator: Emulator, who: str, service: str, call: Any
) -> None:
    # When a client signs with a key the emulator did not issue to the stack
    with pytest.raises(ClientError) as refused:
        call(client(emulator, service, FOREIGN[who]))
    # Then it gets 403
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize(
    ("service", "call"),
    [
        ("secretsmanager", lambda c: c.get_secret_value(SecretId=SECRET_NAME)),
        ("dynamodb", lambda c: c.list_tables()),
        ("sqs", lambda c: c.list_queues()),
        ("s3", lambda c: c.get_object(Bucket=BUCKET, Key=OBJECT_KEY)),
        ("events", lambda c: c.list_event_buses()),
        ("dynamodbstreams", lambda c: c.list_streams()),
    ],
)
def test_the_stack_key_id_with_a_wrong_secret_is_refused(
    emulator: Emulator, service: str, call: Any
) -> None:
    # Given someone who learnt the key id, but not its secret
    forged = StackCredentials(emulator.credentials.access_key_id, "not-the-secret")
    # When they sign with it
    with pytest.raises(ClientError) as refused:
        call(client(emulator, service, forged))
    # Then the signature does not match: 403
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        (
            "POST",
            "/",
            {
                "X-Amz-Target": "secretsmanager.ListSecrets",
                "Content-Type": "application/x-amz-json-1.1",
            },
            b"{}",
        ),
        (
            "POST",
            "/",
            {
                "X-Amz-Target": "secretsmanager.GetSecretValue",
                "Content-Type": "application/x-amz-json-1.1",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
                "secretsmanager/aws4_request, SignedHeaders=host, Signature=00",
            },
            json.dumps({"SecretId": SECRET_NAME}).encode(),
        ),
        ("GET", "/?Action=ListQueues", {}, b""),
        ("GET", f"/{BUCKET}/{OBJECT_KEY}", {}, b""),
        ("GET", "/moto-api/data.json", {}, b""),
        ("GET", "/moto-api/", {}, b""),
        ("GET", "/latest/meta-data/iam/security-credentials/", {}, b""),
    ],
    ids=[
        "list-secrets-unsigned",
        "get-secret-forged",
        "list-queues",
        "get-result-object",
        "moto-api-data",
        "moto-api",
        "instance-metadata",
    ],
)
def test_unsigned_requests_and_the_emulators_own_api_get_403_and_no_data(
    emulator: Emulator, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    # When a local process sends an AWS-shaped request without the stack's signature
    answer = httpx.request(method, emulator.url + path, headers=headers, content=body)
    # Then it is refused, and the answer holds nothing of the account
    assert answer.status_code == 403
    assert SECRET_VALUE not in answer.text
    assert SECRET_NAME not in answer.text
    assert BUCKET not in answer.text


def test_moto_api_cannot_switch_authentication_off(emulator: Emulator) -> None:
    # When a local process asks moto's API to stop checking signatures, then to reset
    switched = httpx.post(f"{emulator.url}/moto-api/reset-auth", content=b"inf")
    reset = httpx.post(f"{emulator.url}/moto-api/reset")
    # Then both are refused
    assert (switched.status_code, reset.status_code) == (403, 403)
    # And a foreign key is still refused, while the stack's data is still there
    with pytest.raises(ClientError):
        client(emulator, "secretsmanager", FOREIGN["the SDKs' default test key"]).list_secrets()
    stack = client(emulator, "secretsmanager", emulator.credentials)
    assert stack.get_secret_value(SecretId=SECRET_NAME)["SecretString"] == SECRET_VALUE


@pytest.mark.parametrize("signature_version", ["default", "s3v4"])
def test_presigned_urls_work_when_the_stack_signed_them_and_only_then(
    emulator: Emulator, signature_version: str
) -> None:
    config = Config(signature_version=None if signature_version == "default" else "s3v4")
    s3 = client(emulator, "s3", emulator.credentials, config=config)
    params = {"Bucket": BUCKET, "Key": OBJECT_KEY}
    # When a caller fetches a download URL the stack presigned (no other credentials)
    url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=600)
    # Then it gets the object
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == OBJECT_BODY
    # And an upload URL the stack presigned stores the object
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": "uploads/new"}, ExpiresIn=600
    )
    assert httpx.put(put_url, content=b"uploaded").status_code == 200
    assert s3.get_object(Bucket=BUCKET, Key="uploads/new")["Body"].read() == b"uploaded"

    # But the same URL for another object, with a changed signature, or presigned with a
    # foreign key is refused, without the object
    foreign = client(
        emulator, "s3", FOREIGN["the SDKs' default test key"], config=config
    ).generate_presigned_url("get_object", Params=params, ExpiresIn=600)
    other_object = url.replace("answer%2B1", "answer%2B2")
    assert other_object != url
    for refused in (other_object, url.replace("Signature=", "Signature=A"), foreign):
        answer = httpx.get(refused)
        assert answer.status_code == 403, refused
        assert b"large result" not in answer.content
    # And an expired one too
    short = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=1)
    time.sleep(2.1)
    expired = httpx.get(short)
    assert expired.status_code == 403 and "expired" in expired.text


def test_authentication_is_off_again_once_the_emulators_stop() -> None:
    # Given two emulators that started and stopped in this process, in crossed order
    first, second = Emulator().start(), Emulator().start()
    first.stop()
    with pytest.raises(ClientError):  # the second one still checks
        client(second, "sqs", FOREIGN["the SDKs' default test key"]).list_queues()
    second.stop()
    # When code in the same process uses moto in memory without credentials of its own
    from moto import mock_aws

    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        secrets.create_secret(Name="after-stop", SecretString="x")
        # Then moto serves it as before (the emulator's switch is not left on)
        assert secrets.get_secret_value(SecretId="after-stop")["SecretString"] == "x"

"""The fault-injecting front of the emulator (issue 10's reliability ledger).

A real emulator (moto server, serving only the stack's key) behind the proxy, real boto3
clients signing for the proxy's URL: with faults off every call goes through; with faults on
botocore parses each fault into the error code AWS would send, `throttle` and `internal` leave
nothing applied, `internal_after` is applied although the caller sees a 500, and one seed gives
one schedule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from claude_jobs_tools.local.aws_faults import AwsFaultProxy, FaultPlan
from claude_jobs_tools.local.emulator import Emulator

_RUN = uuid.uuid4().hex[:8]
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = Emulator().start()
    try:
        dynamodb = client(emulator.url, emulator, "dynamodb")
        dynamodb.create_table(
            TableName=f"faults-{_RUN}",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client(emulator.url, emulator, "s3").create_bucket(Bucket=f"faults-{_RUN}")
        yield emulator
    finally:
        emulator.stop()


def client(url: str, emulator: Emulator, service: str, config: Config | None = None) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=emulator.credentials.access_key_id,
        aws_secret_access_key=emulator.credentials.secret_access_key,
        config=config,
    )


def proxy(emulator: Emulator, **plan: Any) -> AwsFaultProxy:
    faults = AwsFaultProxy(emulator.url, FaultPlan(**plan)).start()
    faults.enabled = True
    return faults


def item_exists(emulator: Emulator, key: str) -> bool:
    direct = client(emulator.url, emulator, "dynamodb")
    return "Item" in direct.get_item(TableName=f"faults-{_RUN}", Key={"pk": {"S": key}})


def put(dynamodb: Any, key: str) -> None:
    dynamodb.put_item(TableName=f"faults-{_RUN}", Item={"pk": {"S": key}})


def write(aws: Any, service: str, key: str) -> None:
    if service == "dynamodb":
        put(aws, key)
    elif service == "sqs":
        aws.create_queue(QueueName=key)
    else:
        aws.put_object(Bucket=f"faults-{_RUN}", Key=key, Body=b"x")


def test_with_faults_off_every_call_goes_through(emulator: Emulator) -> None:
    # Given the proxy with a zero fault rate
    with proxy(emulator, rate=0.0) as faults:
        # When the stack's clients call DynamoDB, SQS and S3 through it (signed for its URL)
        dynamodb = client(faults.url, emulator, "dynamodb", NO_RETRIES)
        put(dynamodb, "through")
        sqs = client(faults.url, emulator, "sqs", NO_RETRIES)
        queue = sqs.create_queue(QueueName=f"faults-{_RUN}")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="hello")
        s3 = client(faults.url, emulator, "s3", NO_RETRIES)
        s3.put_object(Bucket=f"faults-{_RUN}", Key="k", Body=b"x" * 100_000)
        body = s3.get_object(Bucket=f"faults-{_RUN}", Key="k")["Body"].read()
        stats = faults.stats()
    # Then each call reached the emulator and was served (the signatures verified there)
    assert item_exists(emulator, "through")
    assert body == b"x" * 100_000
    assert stats["injected"] == {} and stats["calls"] >= 5


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("dynamodb", {"ProvisionedThroughputExceededException", "ThrottlingException"}),
        ("sqs", {"ThrottlingException"}),
        ("s3", {"SlowDown"}),
    ],
)
def test_throttling_is_the_services_own_error_and_applies_nothing(
    emulator: Emulator, service: str, expected: set[str]
) -> None:
    # Given every call throttled
    with proxy(emulator, rate=1.0, seed=3, weights={"throttle": 1.0}) as faults:
        aws = client(faults.url, emulator, service, NO_RETRIES)
        key = f"throttled-{uuid.uuid4().hex[:6]}"
        # When a write is made through it
        with pytest.raises(ClientError) as raised:
            write(aws, service, key)
    # Then botocore reads the code AWS sends for throttling (one botocore retries on its own)
    assert raised.value.response["Error"]["Code"] in expected
    # And nothing was applied
    direct = client(emulator.url, emulator, service)
    if service == "dynamodb":
        assert not item_exists(emulator, key)
    elif service == "sqs":
        assert key not in str(direct.list_queues().get("QueueUrls", []))
    else:
        assert "Contents" not in direct.list_objects_v2(Bucket=f"faults-{_RUN}", Prefix=key)


def test_an_internal_error_before_the_call_applies_nothing(emulator: Emulator) -> None:
    with proxy(emulator, rate=1.0, weights={"internal": 1.0}) as faults:
        dynamodb = client(faults.url, emulator, "dynamodb", NO_RETRIES)
        with pytest.raises(ClientError) as raised:
            put(dynamodb, "internal-before")
    assert raised.value.response["Error"]["Code"] == "InternalServerError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert not item_exists(emulator, "internal-before")


def test_an_internal_error_after_the_call_was_applied(emulator: Emulator) -> None:
    # Given faults that let the call through and then answer 500
    with proxy(emulator, rate=1.0, weights={"internal_after": 1.0}) as faults:
        dynamodb = client(faults.url, emulator, "dynamodb", NO_RETRIES)
        # When a write is made
        with pytest.raises(ClientError) as raised:
            put(dynamodb, "internal-after")
        stats = faults.stats()
    # Then the caller saw a 500, yet the write took effect (as AWS warns a 500 may have)
    assert raised.value.response["Error"]["Code"] == "InternalServerError"
    assert item_exists(emulator, "internal-after")
    assert stats["by_action"] == {"dynamodb:PutItem": 1}


def test_the_sdks_retries_absorb_occasional_faults(emulator: Emulator) -> None:
    # Given one call in four failing, and botocore's default retries
    with proxy(emulator, rate=0.25, seed=11, weights={"throttle": 1, "internal": 1}) as faults:
        dynamodb = client(faults.url, emulator, "dynamodb")
        # When forty writes are made
        keys = [f"retried-{_RUN}-{n}" for n in range(40)]
        for key in keys:
            put(dynamodb, key)
        stats = faults.stats()
    # Then faults were injected, and every write succeeded all the same
    assert sum(stats["injected"].values()) >= 3
    assert all(item_exists(emulator, key) for key in keys)


def test_faults_are_off_until_enabled_and_outside_the_chosen_services(emulator: Emulator) -> None:
    # Given faults on every call, but for S3 only
    faults = AwsFaultProxy(emulator.url, FaultPlan(rate=1.0, services=frozenset({"s3"})))
    with faults:
        dynamodb = client(faults.url, emulator, "dynamodb", NO_RETRIES)
        s3 = client(faults.url, emulator, "s3", NO_RETRIES)
        # When not yet enabled, S3 answers
        s3.head_bucket(Bucket=f"faults-{_RUN}")
        faults.enabled = True
        # Then once enabled, DynamoDB still answers and S3 fails
        put(dynamodb, "other-service")
        with pytest.raises(ClientError):
            s3.head_bucket(Bucket=f"faults-{_RUN}")


def test_one_seed_gives_one_schedule(emulator: Emulator) -> None:
    def schedule(seed: int) -> list[bool]:
        outcomes = []
        with proxy(emulator, rate=0.5, seed=seed, weights={"throttle": 1.0}) as faults:
            dynamodb = client(faults.url, emulator, "dynamodb", NO_RETRIES)
            for n in range(24):
                try:
                    put(dynamodb, f"seeded-{n}")
                    outcomes.append(True)
                except ClientError:
                    outcomes.append(False)
        return outcomes

    first = schedule(5)
    assert schedule(5) == first
    assert schedule(6) != first
    assert True in first and False in first


def test_a_plan_is_checked() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultPlan(rate=1.5)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultPlan(weights={"meteor": 1.0})


def test_a_transaction_retried_with_its_token_is_not_applied_twice(emulator: Emulator) -> None:
    # Given a conditional transaction that succeeds once, then answers 500 after it applied
    def transact(dynamodb: Any, token: str) -> None:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": f"faults-{_RUN}",
                        "Item": {"pk": {"S": token}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ],
            ClientRequestToken=token,
        )

    token = uuid.uuid4().hex
    with proxy(emulator, rate=1.0, weights={"internal_after": 1.0}) as faults:
        with pytest.raises(ClientError):
            transact(client(faults.url, emulator, "dynamodb", NO_RETRIES), token)
        faults.enabled = False
        # When the caller retries it with the same token, as the SDK does
        transact(client(faults.url, emulator, "dynamodb", NO_RETRIES), token)
    # Then it succeeds as DynamoDB answers a repeated token, without applying it again (the
    # condition would fail a second application)
    assert item_exists(emulator, token)
    assert faults.token_replays == 1

"""DynamoDB tables for tests of the emulator's own DynamoDB (moto as the local stack patches it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def create_table(
    client: Any,
    name: str,
    *keys: tuple[str, str],
    stream: bool = False,
) -> str:
    """A pay-per-request table keyed by `keys` ((name, type): the partition key, then the sort
    key if any), with a stream of new and old images when `stream`. Returns its name."""
    if not 1 <= len(keys) <= 2:
        raise ValueError("a table has a partition key and at most one sort key")
    roles = ("HASH", "RANGE")[: len(keys)]
    schema = [
        {"AttributeName": k, "KeyType": role} for (k, _), role in zip(keys, roles, strict=True)
    ]
    client.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, t in keys],
        BillingMode="PAY_PER_REQUEST",
        **(
            {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
            if stream
            else {}
        ),
    )
    return name


@contextmanager
def mocked_dynamodb() -> Iterator[Any]:
    """A DynamoDB client of an in-process moto (`mock_aws`), in us-east-1."""
    import boto3
    import pytest
    from moto import mock_aws

    with mock_aws(), pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield boto3.client("dynamodb", region_name="us-east-1")

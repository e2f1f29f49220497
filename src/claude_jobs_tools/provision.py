"""Create the stateful resources from :mod:`claude_jobs.resources` with boto3.

Used by the local stack (against the moto server) and by the tests (under `mock_aws`); the CDK
app builds the same resources from the same definitions for AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from claude_jobs.resources import (
    EVENTS_TABLE,
    JOBS_QUEUE,
    QUEUES,
    TABLES,
    TRIGGER_DLQ,
    WEBHOOK_QUEUE,
    Queue,
    Table,
)
from claude_jobs.settings import Settings


@dataclass(frozen=True)
class Provisioned:
    settings: Settings
    queue_urls: dict[str, str]  # logical id → URL
    queue_arns: dict[str, str]


def _random_signing_key() -> str:
    import secrets

    return secrets.token_urlsafe(48)


def _table_kwargs(table: Table, name: str) -> dict[str, Any]:
    def schema(pk: Any, sk: Any) -> list[dict[str, str]]:
        keys = [{"AttributeName": pk.name, "KeyType": "HASH"}]
        if sk is not None:
            keys.append({"AttributeName": sk.name, "KeyType": "RANGE"})
        return keys

    kwargs: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": a.name, "AttributeType": a.type} for a in table.attributes
        ],
        "KeySchema": schema(table.partition_key, table.sort_key),
    }
    if table.stream_view_type:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": table.stream_view_type,
        }
    if table.indexes:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": ix.name,
                "KeySchema": schema(ix.partition_key, ix.sort_key),
                "Projection": {"ProjectionType": ix.projection},
            }
            for ix in table.indexes
        ]
    return kwargs


def _queue_attributes(queue: Queue, dlq_arn: str | None) -> dict[str, str]:
    attributes = {
        "VisibilityTimeout": str(queue.visibility_timeout_seconds),
        "MessageRetentionPeriod": str(queue.retention_seconds),
    }
    if queue.max_receive_count and dlq_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receive_count}
        )
    return attributes


def provision(
    prefix: str = "claude-jobs",
    *,
    region: str = "us-east-1",
    secret_value: str | None = None,
    queue_overrides: dict[str, dict[str, str]] | None = None,
    **settings_overrides: Any,
) -> Provisioned:
    """Create every table, queue, the results and inbox buckets, the event bus and the
    secrets; return the settings
    that point at them. `queue_overrides` (logical id → attributes) lets a test shorten the
    visibility timeout."""
    session = boto3.session.Session(region_name=region)
    dynamodb = session.client("dynamodb")
    for table in TABLES:
        name = table.name(prefix)
        dynamodb.create_table(**_table_kwargs(table, name))
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )

    sqs = session.client("sqs")
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for queue in QUEUES:  # each DLQ before its queue: the queue's redrive names it
        dlq_arn = next(
            (arns[q.logical_id] for q in QUEUES if q.name_suffix == queue.dlq_suffix), None
        )
        attributes = _queue_attributes(queue, dlq_arn)
        attributes.update((queue_overrides or {}).get(queue.logical_id, {}))
        url = sqs.create_queue(
            QueueName=queue.name(prefix),
            Attributes=attributes,  # type: ignore[arg-type]
        )["QueueUrl"]
        urls[queue.logical_id] = url
        arns[queue.logical_id] = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]

    bucket = f"{prefix}-results"
    inbox = settings_overrides.setdefault("inbox_bucket", f"{prefix}-inbox")
    s3 = session.client("s3")
    for name in (bucket, inbox):
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
    bus = settings_overrides.setdefault("event_bus_name", f"{prefix}-events")
    session.client("events").create_event_bus(Name=bus)

    secret_name = f"{prefix}/anthropic-api-key"
    secrets = session.client("secretsmanager")
    if secret_value is None:
        secrets.create_secret(Name=secret_name)
    else:
        secrets.create_secret(Name=secret_name, SecretString=secret_value)

    webhook_secret_name = f"{prefix}/webhook-signing-key"
    secrets.create_secret(Name=webhook_secret_name, SecretString=_random_signing_key())

    # The key of GET /v1/jobs page tokens: generated, as the CDK app's is (issue 20).
    page_token_secret_name = f"{prefix}/page-token-key"
    secrets.create_secret(Name=page_token_secret_name, SecretString=_random_signing_key())

    values: dict[str, Any] = {
        "jobs_table": TABLES[0].name(prefix),
        "keys_table": TABLES[1].name(prefix),
        "events_table": EVENTS_TABLE.name(prefix),
        "jobs_queue_url": urls[JOBS_QUEUE.logical_id],
        "results_bucket": bucket,
        "anthropic_secret_id": secret_name,
        "trigger_dlq_url": urls[TRIGGER_DLQ.logical_id],
        "webhook_secret_id": webhook_secret_name,
        "webhook_queue_url": urls[WEBHOOK_QUEUE.logical_id],
        "page_token_secret_id": page_token_secret_name,
        "vault_secret_prefix": f"{prefix}/vault/",
        **settings_overrides,
    }
    return Provisioned(settings=Settings(**values), queue_urls=urls, queue_arns=arns)

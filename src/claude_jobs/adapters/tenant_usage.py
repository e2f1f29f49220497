"""A tenant's usage counter (`usage#<tenant>`: pending and running jobs) on the jobs table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TenantLimitError
from ..ports import TenantUsage
from .dynamo import from_item, serialize
from .job_items import OPEN_SHARD, USAGE_PREFIX, open_shard

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def usage_item_id(tenant_id: str) -> str:
    return f"{USAGE_PREFIX}{tenant_id}"


def usage_update(
    table: str, tenant_id: str, *, pending: int = 0, running: int = 0
) -> dict[str, Any]:
    """The transaction item that moves a tenant's counts by (pending, running); it keeps the
    counter in the unfinished-jobs index, where the reconciler finds every tenant's."""
    item_id = usage_item_id(tenant_id)
    return {
        "TableName": table,
        "Key": {"job_id": {"S": item_id}},
        "UpdateExpression": "SET #open = :open ADD pending :p, running :r",
        "ExpressionAttributeNames": {"#open": OPEN_SHARD},
        "ExpressionAttributeValues": {
            ":p": serialize(pending),
            ":r": serialize(running),
            ":open": serialize(open_shard(item_id)),
        },
    }


def read_usage(client: DynamoDBClient, table: str, tenant_id: str) -> TenantUsage:
    """The tenant's counts, read consistently (zero when it has none yet)."""
    item = client.get_item(
        TableName=table, Key={"job_id": {"S": usage_item_id(tenant_id)}}, ConsistentRead=True
    ).get("Item", {})
    data = from_item(item)
    return TenantUsage(int(data.get("pending", 0)), int(data.get("running", 0)))


def limit_error(max_pending: int | None) -> TenantLimitError:
    return TenantLimitError(
        f"This tenant already has {max_pending} pending (queued or running) jobs, as many as "
        "this deployment allows; submit again once some have finished."
    )

"""Frees a removed job's slots on its tenant's usage counter, once (see claude_jobs.slots)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .dynamo import serialize
from .jobs_table import usage_item_id

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: `released#<job id>`: written with the counter's change, so a stream record seen again
#: (delivery is at-least-once) frees nothing more. No status, no GSI attributes: neither the
#: notifier nor the listing sees it; it expires after the stream's 24 h retention has passed.
RELEASE_PREFIX = "released#"
RELEASE_MARKER_SECONDS = 3 * 24 * 3600


class DynamoSlotReleases:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def release(self, job_id: str, tenant_id: str, pending: int, running: int) -> bool:
        marker: dict[str, Any] = {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "job_id": {"S": f"{RELEASE_PREFIX}{job_id}"},
                    "released_tenant": {"S": tenant_id},
                    "expires_at": serialize(int(time.time()) + RELEASE_MARKER_SECONDS),
                },
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
        }
        counter = {
            "Update": {
                "TableName": self._table,
                "Key": {"job_id": {"S": usage_item_id(tenant_id)}},
                "UpdateExpression": "ADD pending :p, running :r",
                "ExpressionAttributeValues": {
                    ":p": serialize(-pending),
                    ":r": serialize(-running),
                },
            }
        }
        try:
            # One request token: the SDK's retry after a lost answer is not applied twice.
            self._client.transact_write_items(
                TransactItems=[marker, counter],  # type: ignore[list-item]
                ClientRequestToken=uuid.uuid4().hex,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False  # freed already
            raise  # a conflict with another write: the record is retried
        return True

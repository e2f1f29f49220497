"""The API key store on DynamoDB: items keyed by the key's SHA-256 hash."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..keys import ApiKey
from ..resources import API_KEYS_TABLE
from .dynamo import from_item, to_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_ID_INDEX = API_KEYS_TABLE.index("by_key_id").name


def _record(item: dict[str, Any]) -> ApiKey:
    data = from_item(item)
    return ApiKey(
        key_id=data["key_id"],
        tenant_id=data["tenant_id"],
        name=data.get("name", ""),
        created_at=datetime.fromisoformat(data["created_at"]),
        expires_at=datetime.fromisoformat(data["expires_at"]) if data.get("expires_at") else None,
        revoked=bool(data.get("revoked", False)),
    )


class DynamoKeyStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put(self, key: ApiKey, key_hash: str) -> None:
        self._client.put_item(
            TableName=self._table,
            Item=to_item(
                {
                    "key_hash": key_hash,
                    "key_id": key.key_id,
                    "tenant_id": key.tenant_id,
                    "name": key.name,
                    "created_at": key.created_at.isoformat(),
                    "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                    "revoked": key.revoked,
                }
            ),
            ConditionExpression="attribute_not_exists(key_hash)",
        )

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        item = self._client.get_item(TableName=self._table, Key={"key_hash": {"S": key_hash}}).get(
            "Item"
        )
        return None if item is None else _record(item)

    def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        kwargs: dict[str, Any] = {"TableName": self._table}
        if tenant_id is not None:
            kwargs["FilterExpression"] = "tenant_id = :t"
            kwargs["ExpressionAttributeValues"] = {":t": {"S": tenant_id}}
        keys: list[ApiKey] = []
        for page in self._client.get_paginator("scan").paginate(**kwargs):
            keys.extend(_record(i) for i in page.get("Items", []))
        return sorted(keys, key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> ApiKey | None:
        found = self._client.query(
            TableName=self._table,
            IndexName=KEY_ID_INDEX,
            KeyConditionExpression="key_id = :k",
            ExpressionAttributeValues={":k": {"S": key_id}},
        ).get("Items", [])
        if not found:
            return None
        try:
            updated = self._client.update_item(
                TableName=self._table,
                Key={"key_hash": found[0]["key_hash"]},
                UpdateExpression="SET revoked = :t",
                ConditionExpression="attribute_exists(key_hash)",
                ExpressionAttributeValues={":t": {"BOOL": True}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return _record(updated["Attributes"])

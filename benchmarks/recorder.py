"""Records every AWS request a code path makes, with the sizes the ledger charges.

Attached to the boto3 clients the code path uses through botocore's event hooks
(`provide-client-params` before a call, `after-call` after it) — nothing is patched. Item
sizes come from `item_size()` (DynamoDB's rules) of the whole item, read before and after each
write by a separate, unrecorded probe client (DynamoDB charges reads on the whole item and
updates on the larger of the old and new item, neither of which the call itself shows).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from botocore.exceptions import ClientError

from benchmarks.ledger import (
    INDEX_ENTRY_OVERHEAD_BYTES,
    DynamoRead,
    DynamoWrite,
    Invocation,
    Record,
    Request,
)
from claude_jobs.adapters.dynamo import item_size
from claude_jobs.resources import Table

_KEY_CONDITION = re.compile(r"([#\w]+)\s*=\s*(:\w+)")


class Recorder:
    def __init__(self, probe: Any, tables: dict[str, Table]) -> None:
        self._probe = probe  # an unrecorded DynamoDB client
        self._tables = tables  # physical name → definition
        self._lock = threading.Lock()
        self.records: list[tuple[str, Record]] = []
        #: What the records made from now on belong to (a job kind of the mix).
        self.tag = ""

    def attach(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params", self._before)
        client.meta.events.register("after-call", self._after)
        return client

    def add(self, record: Record) -> None:
        with self._lock:
            self.records.append((self.tag, record))

    def invocation(self, function: str, seconds: float, memory_mb: int) -> None:
        self.add(Invocation(function, seconds, memory_mb))

    # ------------------------------------------------------------ hooks

    def _before(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        context["ledger_params"] = params
        body = params.get("Body")
        if isinstance(body, bytes | str):  # before botocore wraps it in a stream
            context["ledger_size"] = len(body.encode() if isinstance(body, str) else body)
        if model.service_model.service_name != "dynamodb":
            return
        context["ledger_old"] = [self._full(t, k) for t, k, _ in _written(model.name, params)]

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service, action = model.service_model.service_name, model.name
        params = context.get("ledger_params")
        if params is None:
            return
        failed = "Error" in parsed
        if service == "dynamodb":
            self._dynamodb(action, params, parsed, context.get("ledger_old", []), failed)
        elif service == "s3":
            self._s3(action, params, parsed, int(context.get("ledger_size", 0)))
        elif service == "sqs":
            self._sqs(action, params, parsed)
        elif service == "events" and action == "PutEvents":
            for entry in params.get("Entries", []):
                self.add(Request("events", action, size=len(json.dumps(entry).encode())))
        else:
            self.add(Request(service, action))

    # ------------------------------------------------------------ services

    def _dynamodb(
        self,
        action: str,
        params: dict[str, Any],
        parsed: dict[str, Any],
        old: list[dict[str, Any] | None],
        failed: bool,
    ) -> None:
        written = _written(action, params)
        if written:
            for (table, key, put), before in zip(written, old, strict=True):
                after = before if failed else (put if put is not None else self._full(table, key))
                if action == "DeleteItem" and not failed:
                    after = None
                self._write(table, key, before, after, action == "TransactWriteItems")
        elif action == "GetItem":
            table = params["TableName"]
            full = self._full(table, params["Key"])
            self.add(
                DynamoRead(
                    action,
                    table,
                    (item_size(full) if full else 0,),
                    bool(params.get("ConsistentRead")),
                    partition=_key_text(params["Key"]),
                    tenant=_tenant(full),
                )
            )
        elif action == "BatchGetItem":
            for table, spec in params["RequestItems"].items():
                items = [self._full(table, key) for key in spec["Keys"]]
                self.add(
                    DynamoRead(
                        action,
                        table,
                        tuple(item_size(i) if i else 0 for i in items),
                        bool(spec.get("ConsistentRead")),
                        partition=table,
                        tenant=next((_tenant(i) for i in items if i), None),
                    )
                )
        elif action == "Query":
            values = params.get("ExpressionAttributeValues", {})
            # The partition key's condition comes first: "<pk> = :v [AND <sort key> …]".
            found = _KEY_CONDITION.search(params["KeyConditionExpression"])
            partition = _value_text(values[found.group(2)]) if found else ""
            self.add(
                DynamoRead(
                    action,
                    params["TableName"],
                    tuple(item_size(i) for i in parsed.get("Items", [])),
                    bool(params.get("ConsistentRead")),
                    index=params.get("IndexName"),
                    partition=partition,
                )
            )

    def _write(
        self,
        table_name: str,
        key: dict[str, Any],
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        transactional: bool,
    ) -> None:
        table = self._tables.get(table_name)
        changes: list[tuple[str, str | None, str | None, int]] = []
        if table is not None:
            changes = [
                (index.name, *_index_change(table, index, old, new)) for index in table.indexes
            ]
        first = changes[0] if changes else ("", None, None, 0)
        self.add(
            DynamoWrite(
                table_name,
                _key_text(key),
                item_size(old) if old else 0,
                item_size(new) if new else 0,
                first[1],
                first[2],
                first[3],
                _tenant(new) or _tenant(old),
                transactional,
                tuple(changes[1:]),
            )
        )

    def _s3(self, action: str, params: dict[str, Any], parsed: dict[str, Any], size: int) -> None:
        key = str(params.get("Key", ""))
        if action == "PutObject":
            self.add(Request("s3", action, key, size))
        elif action == "GetObject":
            self.add(Request("s3", action, key, int(parsed.get("ContentLength", 0))))
        elif action == "DeleteObjects":
            for obj in params.get("Delete", {}).get("Objects", []):
                self.add(Request("s3", "DeleteObject", str(obj["Key"])))
        else:
            self.add(Request("s3", action, key))

    def _sqs(self, action: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        if action == "SendMessage":
            size = len(str(params.get("MessageBody", "")).encode())
        elif action == "ReceiveMessage":
            size = sum(len(m.get("Body", "").encode()) for m in parsed.get("Messages", []))
        else:
            size = 0
        self.add(Request("sqs", action, size=size))

    # ------------------------------------------------------------ probe

    def _full(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = self._probe.get_item(TableName=table, Key=key, ConsistentRead=True)
        except ClientError:
            return None
        item: dict[str, Any] | None = found.get("Item")
        return item


def _written(
    action: str, params: dict[str, Any]
) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(table, key, the item a put writes or None) of every item a write request writes."""
    if action == "PutItem":
        return [(params["TableName"], _key_of(params), params["Item"])]
    if action in {"UpdateItem", "DeleteItem"}:
        return [(params["TableName"], params["Key"], None)]
    if action == "TransactWriteItems":
        out: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for item in params["TransactItems"]:
            for kind, spec in item.items():
                if kind == "Put":
                    out.append((spec["TableName"], _key_of(spec), spec["Item"]))
                elif kind in {"Update", "Delete"}:
                    out.append((spec["TableName"], spec["Key"], None))
        return out
    return []


def _key_of(spec: dict[str, Any]) -> dict[str, Any]:
    item = spec["Item"]
    # Every table here is keyed by its first attribute name in the schema: job_id / key_hash.
    for name in ("job_id", "key_hash"):
        if name in item:
            return {name: item[name]}
    raise ValueError(f"unknown key of {sorted(item)}")


def _key_text(key: dict[str, Any]) -> str:
    return "|".join(_value_text(v) for v in key.values())


def _value_text(value: dict[str, Any]) -> str:
    return str(next(iter(value.values())))


def _tenant(item: dict[str, Any] | None) -> str | None:
    if not item or "tenant_id" not in item:
        return None
    return _value_text(item["tenant_id"])


def _index_change(
    table: Table, index: Any, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> tuple[str | None, str | None, int]:
    """An index's partition before and after a write, and its KEYS_ONLY entry's bytes."""
    names = {table.partition_key.name, index.partition_key.name}
    if index.sort_key is not None:
        names.add(index.sort_key.name)
    keyed = new or old or {}
    entry = item_size({n: v for n, v in keyed.items() if n in names})
    entry += INDEX_ENTRY_OVERHEAD_BYTES
    return (
        _index_key(index.partition_key.name, old),
        _index_key(index.partition_key.name, new),
        entry,
    )


def _index_key(name: str, item: dict[str, Any] | None) -> str | None:
    if not item or name not in item:
        return None
    return _value_text(item[name])

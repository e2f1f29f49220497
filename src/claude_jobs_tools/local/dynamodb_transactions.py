"""moto's `TransactWriteItems`, backed up item by item instead of table by table.

moto keeps a deep copy of every table a transaction names, taken before the transaction, to
put back if it fails. The cost of that copy grows with the table: on the local stack, where
every claim and every end of a job is a transaction (fair sharing counts running jobs in the
same write), it was half of the stack's CPU after a hundred jobs, and every job got slower than
the one before.

`install()` makes moto's backup take the items the transaction names instead (each one's
copy, or its absence) and the tables' stream lengths; a failed transaction puts those back
and drops the stream records it added. That is what the whole-table copy restored, since a
transaction writes only the items it names. moto's own code still checks the conditions and
makes the writes, so its answers and errors are unchanged. The emulator serves DynamoDB
requests one at a time (`emulator.serialize_dynamodb`), so nothing else changes a table
between the backup and the rollback.
"""

from __future__ import annotations

import copy
import functools
import threading
import types
from typing import Any

_installed = False
_lock = threading.Lock()


class _TableKeepingCopy(types.ModuleType):
    """moto's `copy` module as its DynamoDB backend sees it: `deepcopy` of a whole table
    returns the table itself (its backup is taken item by item instead)."""

    def __init__(self, table_type: type) -> None:
        super().__init__("copy")
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _key_of(backend: Any, table: Any, op_type: str, op: dict[str, Any]) -> tuple[Any, Any]:
    if op_type == "Put":
        attrs = op["Item"]
        keys = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            keys[table.range_key_attr] = attrs[table.range_key_attr]
    else:
        keys = op["Key"]
    hash_key, range_key = backend.get_keys_value(table, keys)
    return hash_key, range_key


def _backup(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(table, hash, range, copy of the item or None) for every item the transaction names,
    then (table, stream length) for every table with a stream."""
    saved: list[tuple[Any, ...]] = []
    streams: dict[int, tuple[Any, int]] = {}
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            hash_key, range_key = _key_of(backend, table, op_type, op)
        except Exception:  # noqa: S112 - malformed: moto refuses it before any write
            continue
        current = table.get_item(hash_key, range_key)
        saved.append((table, hash_key, range_key, copy.deepcopy(current)))
        if table.stream_shard is not None:
            streams[id(table)] = (table, len(table.stream_shard.items))
    return saved + list(streams.values())


def _restore(saved: list[tuple[Any, ...]]) -> None:
    for entry in reversed(saved):
        if len(entry) == 2:
            table, length = entry
            del table.stream_shard.items[length:]
            continue
        table, hash_key, range_key, item = entry
        if table.has_range_key:
            bucket = table.items[hash_key]
            if item is None:
                bucket.pop(range_key, None)
                if not bucket:
                    table.items.pop(hash_key, None)
            else:
                bucket[range_key] = item
        elif item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item


def install() -> None:
    """Patch moto's DynamoDB backend of this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb import models
        from moto.dynamodb.models.table import Table

        original = models.DynamoDBBackend.transact_write_items

        @functools.wraps(original)
        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            saved = _backup(self, transact_items)
            try:
                original(self, transact_items)
            except BaseException:
                _restore(saved)
                raise

        models.copy = _TableKeepingCopy(Table)  # type: ignore[attr-defined]
        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _installed = True

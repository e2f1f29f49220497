"""moto's `Query` of a table's own key, reading that key's items instead of the whole table.

moto answers a `Query` on a table's partition key by listing every item of the table, sorting
them all, and keeping those of the key asked for. On the local stack, callers following a job's
progress read its events that way a dozen times a job, so each read cost more with every job
the stack had run: the events table only grows (until its items expire). `install()` makes
such a query list the items stored under its partition key (moto keeps them by key already),
and nothing else. Everything after that step is moto's own code: the
range condition, the order, the limit and the start key, the filter, the projection, and the
answers and errors.

Queries on an index still go through the whole table (moto keeps no index), as does `Scan`.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

_installed = False
_lock = threading.Lock()
#: The table and partition key of the `Query` running in this context, while it lists items.
_narrowed: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "claude_jobs_narrowed_query", default=None
)


def install() -> None:
    """Narrow moto's base-table queries to their partition key (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb.models.table import Table

        query, all_items = Table.query, Table.all_items

        def narrowed_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
            index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
            if index_name or hash_key is None:
                return query(self, hash_key, *args, **kwargs)
            token = _narrowed.set((self, hash_key))
            try:
                return query(self, hash_key, *args, **kwargs)
            finally:
                _narrowed.reset(token)

        def items_of_the_key(self: Any) -> Any:
            narrowed = _narrowed.get()
            if narrowed is None or narrowed[0] is not self:
                return all_items(self)
            hash_key = narrowed[1]
            if hash_key not in self.items:  # (a defaultdict: `in` adds nothing)
                return []
            stored = self.items[hash_key]
            # moto sorts what this returns by range key next (the keys are unique in a
            # partition), so the full listing's order need not be made here.
            return list(stored.values()) if self.range_key_attr else [stored]

        setattr(Table, "query", narrowed_query)  # noqa: B010 - moto's class, patched
        setattr(Table, "all_items", items_of_the_key)  # noqa: B010
        _installed = True

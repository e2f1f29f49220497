"""moto's `Query` of a table's own key, reading that key's items instead of the whole table.

moto answers a `Query` on a table's partition key by listing every item of the table, sorting
them all, and keeping those of the key asked for. On the local stack, callers following a job's
progress read its events that way a dozen times a job, so each read cost more with every job
the stack had run: the events table only grows (until its items expire). `install()` makes
such a query list the items stored under its partition key (moto keeps them by key already),
and nothing else. Everything after that step is moto's own code: the
range condition, the order, the limit and the start key, the filter, the projection, and the
answers and errors.

A `Query` of an index (moto keeps none) still looks at every item, but no longer sorts the
whole table first: moto listed every item sorted by key (a Python comparison of its attribute
types per step) before keeping those with the index key asked for, then sorted those again by
the index's own keys. Now the listing is the items that carry the key's values, in storage
order; moto's own loop checks them again and sorts them as before. The reconciler queries its
unfinished-jobs index 8 times a run (every 5 s on the local stack). `Scan` is unchanged.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

_installed = False
_lock = threading.Lock()
#: The table of the `Query` running in this context, while it lists items, and what it asks:
#: ("key", the partition key) or ("index", the index key's (name, value) conditions).
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
            if index_name:
                conditions = kwargs.get("hash_key_conditions")
                if not conditions:
                    return query(self, hash_key, *args, **kwargs)
                token = _narrowed.set((self, ("index", tuple(conditions))))
            elif hash_key is None:
                return query(self, hash_key, *args, **kwargs)
            else:
                token = _narrowed.set((self, ("key", hash_key)))
            try:
                return query(self, hash_key, *args, **kwargs)
            finally:
                _narrowed.reset(token)

        def items_of_the_key(self: Any) -> Any:
            narrowed = _narrowed.get()
            if narrowed is None or narrowed[0] is not self:
                return all_items(self)
            kind, asked = narrowed[1]
            if kind == "index":
                # The items moto's loop keeps (a value present and equal: DynamoType's `==`
                # is its `!=` negated).
                return [
                    item
                    for item in _stored(self)
                    if all(
                        (value := item.attrs.get(name)) and value == expected
                        for name, expected in asked
                    )
                ]
            if asked not in self.items:  # (a defaultdict: `in` adds nothing)
                return []
            stored = self.items[asked]
            # moto sorts what this returns by range key next (the keys are unique in a
            # partition), so the full listing's order need not be made here.
            return list(stored.values()) if self.range_key_attr else [stored]

        setattr(Table, "query", narrowed_query)  # noqa: B010 - moto's class, patched
        setattr(Table, "all_items", items_of_the_key)  # noqa: B010
        _installed = True


def _stored(table: Any) -> Any:
    """Every item of a moto table, in storage order (its `all_items` without the sort)."""
    for stored in table.items.values():
        if table.range_key_attr:
            yield from stored.values()
        else:
            yield stored

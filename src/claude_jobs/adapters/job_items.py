"""Job items of the jobs table: their keys, their attributes, and job writes as expressions."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from ..approval_models import PendingApproval
from ..clock import epoch, iso
from ..errors import InvalidCursorError
from ..job_status import JobStatus
from ..models import Job
from ..ports import Transition
from ..resources import JOBS_TABLE, OPEN_SHARDS, TENANT_SHARDS
from .dynamo import from_item, serialize

if TYPE_CHECKING:
    from pydantic import TypeAdapter

TENANT_INDEX = JOBS_TABLE.index("by_tenant_shard").name
APPROVAL_INDEX = JOBS_TABLE.index("by_approval").name
#: The keys of `APPROVAL_INDEX`, a sparse index: only a job awaiting a decision has them
#: (its tenant, and "<requested_at ISO>#<job_id>": oldest request first).
APPROVAL_TENANT = JOBS_TABLE.index(APPROVAL_INDEX).partition_key.name
APPROVAL_KEY = "approval_key"
#: The sparse index of unfinished jobs and usage counters (the reconciler's), and its key:
#: set while a job is queued, running or awaiting approval, removed by the write that ends it.
OPEN_INDEX = JOBS_TABLE.index("by_open").name
OPEN_SHARD = JOBS_TABLE.index(OPEN_INDEX).partition_key.name
IDEM_PREFIX = "idem#"
#: A tenant's usage counter (`pending`, `running`): the same table, so that it changes in one
#: transaction with the job. No TTL (never expires); of the indexes, only the unfinished-jobs
#: one (the reconciler's): never listed.
USAGE_PREFIX = "usage#"
#: A conversation (`session#<id>`): its tenant, jobs and the job that holds it. No status (the
#: notifier ignores it), no GSI attributes (never listed); it expires with its transcripts.
SESSION_PREFIX = "session#"
#: Items of the table that are not jobs: a job read never returns them.
INTERNAL_PREFIXES = (IDEM_PREFIX, USAGE_PREFIX, SESSION_PREFIX)


def idempotency_item_id(tenant_id: str, key: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}\x00{key}".encode()).hexdigest()
    return f"{IDEM_PREFIX}{digest}"


def attribute(value: Any) -> dict[str, Any]:
    """A field's plain (JSON-mode) value as an attribute value. Structured values — the
    options with their output schema, metadata, the result with its structured output, usage,
    errors — are stored as JSON text, never as DynamoDB maps and numbers: any valid JSON
    round-trips exactly (an empty property name, 1e300, 50 digits, 64 levels), which DynamoDB's
    own types cannot hold."""
    if isinstance(value, dict | list):
        return {"S": json.dumps(value, ensure_ascii=False, separators=(",", ":"))}
    return serialize(value)


def shard_key(tenant_id: str, shard: int) -> str:
    return f"{tenant_id}#{shard}"


def tenant_shard(tenant_id: str, job_id: str) -> str:
    """The index partition of a job: its tenant and a shard from a hash of its id."""
    digest = hashlib.sha256(job_id.encode()).digest()
    return shard_key(tenant_id, int.from_bytes(digest[:4], "big") % TENANT_SHARDS)


def open_shard(item_key: str) -> str:
    """The `by_open` partition of an unfinished job or a usage counter, from its key."""
    digest = hashlib.sha256(item_key.encode()).digest()
    return open_shard_key(int.from_bytes(digest[:4], "big") % OPEN_SHARDS)


def open_shard_key(shard: int) -> str:
    return f"open#{shard}"


_CREATED_KEY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#[A-Za-z0-9_-]{1,128}$")


def cursor_positions(cursor: Mapping[str, Any] | None) -> list[str | None]:
    """Each shard's position from a cursor this repository returned; InvalidCursorError for
    anything else (a forged token must not reach DynamoDB as a 5xx)."""
    if cursor is None:
        return [""] * TENANT_SHARDS
    found = cursor.get("p") if set(cursor) == {"p"} else None
    if not isinstance(found, list) or len(found) != TENANT_SHARDS:
        raise InvalidCursorError("not a position in this listing")
    for position in found:
        if position is None or position == "":
            continue
        if not isinstance(position, str) or not _CREATED_KEY.match(position):
            raise InvalidCursorError("not a position in this listing")
    if all(p is None for p in found):
        raise InvalidCursorError("not a position in this listing")
    return list(found)


def job_to_item(job: Job, retention_days: int) -> dict[str, Any]:
    data = job.model_dump(mode="json", exclude_none=True)
    item = {name: attribute(value) for name, value in data.items()}
    item["tenant_shard"] = serialize(tenant_shard(job.tenant_id, job.job_id))
    item["created_key"] = serialize(f"{iso(job.created_at)}#{job.job_id}")
    item["expires_at"] = serialize(epoch(job.created_at + timedelta(days=retention_days)))
    if not job.status.is_terminal:
        item[OPEN_SHARD] = serialize(open_shard(job.job_id))
    return item


#: Job fields that hold structured values: JSON text in the item (maps in items written
#: before documents were opaque, which still read).
_STRUCTURED_FIELDS = frozenset(
    name
    for name, info in Job.model_fields.items()
    if name not in ("job_id", "tenant_id", "status", "prompt", "system_prompt", "source")
    and info.annotation not in (int, str, bool, int | None, str | None, float | None)
    and "datetime" not in str(info.annotation)
)


def item_to_job(item: Mapping[str, Any]) -> Job:
    data: dict[str, Any] = {}
    for name, value in item.items():
        if name in _STRUCTURED_FIELDS and "S" in value:
            data[name] = json.loads(value["S"])
        else:
            data.update(from_item({name: value}))
    return Job.model_validate(data)


#: Fields no write may set: the keys, and what the repository itself maintains.
_FIXED_FIELDS = frozenset({"job_id", "tenant_id", "version"})


@cache
def _field_type(name: str) -> TypeAdapter[Any]:
    # Imported here: only updates use it, and the API functions' cold start skips the module.
    from pydantic import TypeAdapter

    annotation: Any = Job.model_fields[name].annotation
    return TypeAdapter(annotation)


def update_parts(
    set_fields: Mapping[str, Any],
    remove_fields: Sequence[str],
    add_attempts: int,
    change: Transition | None = None,
) -> tuple[dict[str, dict[str, Any] | None], str, dict[str, str], dict[str, Any]]:
    """A job write as (attribute values, update expression, names, values): the only place
    job writes become DynamoDB expressions. Every write bumps `version`; a transition
    (`change`) also writes the bookkeeping outside the Job model (`bookkeeping`)."""
    names: dict[str, str] = {"#version": "version"}
    values: dict[str, Any] = {":one": {"N": "1"}, ":zero": {"N": "0"}}
    sets = ["#version = if_not_exists(#version, :zero) + :one"]
    removes: list[str] = []
    if change is not None:
        sets, removes = bookkeeping(change, sets, names, values)
    attributes = field_attributes(set_fields)
    for field in remove_fields:
        check_field(field)
        attributes.setdefault(field, None)
    if "usage" in attributes:  # the usage recorded holds what the spend journal held
        attributes.setdefault("unrecorded_usd", None)
    for i, (name, value) in enumerate(attributes.items()):
        names[f"#f{i}"] = name
        if value is None:  # a None value removes the attribute
            removes.append(f"#f{i}")
        else:
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
    if add_attempts:
        names["#attempts"] = "attempts"
        values[":add"] = serialize(add_attempts)
        sets.append("#attempts = if_not_exists(#attempts, :zero) + :add")
    expression = "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    return attributes, expression, names, values


def bookkeeping(
    change: Transition, sets: list[str], names: dict[str, str], values: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The attributes outside the Job model a transition writes, as (sets, removes) added to
    the write's own: the approval index's keys (set when the job becomes `awaiting_approval`
    with its pending approval, removed by any other status), the unfinished-jobs index's key
    (removed when the job ends, set otherwise: a job written before the index existed joins it
    at its next transition; an unchanged key writes nothing to the index) and `message_due`."""
    removes: list[str] = []
    names.update({"#b_tenant": APPROVAL_TENANT, "#b_key": APPROVAL_KEY, "#b_open": OPEN_SHARD})
    if change.to.is_terminal:
        removes.append("#b_open")
    else:
        values[":b_open"] = serialize(open_shard(change.job_id))
        sets = [*sets, "#b_open = :b_open"]
    pending = (change.set_fields or {}).get("pending_approval")
    if change.to is JobStatus.AWAITING_APPROVAL and pending is not None:
        requested = PendingApproval.model_validate(pending).requested_at
        names["#b_tenant_id"] = "tenant_id"
        values[":b_key"] = serialize(f"{iso(requested)}#{change.job_id}")
        sets = [*sets, "#b_tenant = #b_tenant_id", "#b_key = :b_key"]
    else:
        removes += ["#b_tenant", "#b_key"]
    if change.message_due is not None:
        names["#b_due"] = "message_due"
        values[":b_due"] = serialize(epoch(change.message_due))
        sets = [*sets, "#b_due = :b_due"]
    return sets, removes


def approval_positions(cursor: Mapping[str, Any] | None) -> str | None:
    """The approval key after which a page of waiting jobs starts (None: from the oldest);
    InvalidCursorError for a cursor `list_awaiting_approval` did not return."""
    if cursor is None:
        return None
    after = cursor.get("a") if set(cursor) == {"a"} else None
    if not isinstance(after, str) or not _CREATED_KEY.match(after):
        raise InvalidCursorError("not a position in this listing")
    return after


def check_field(name: str) -> None:
    if name not in Job.model_fields or name in _FIXED_FIELDS:
        raise ValueError(f"{name!r} is not a job field a write may change")


def field_attributes(fields: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
    """Job fields (domain values, checked against the model's types) as attribute values;
    None for a field to remove."""
    attributes: dict[str, dict[str, Any] | None] = {}
    for name, value in fields.items():
        check_field(name)
        if value is None:
            attributes[name] = None
            continue
        adapter = _field_type(name)
        plain = adapter.dump_python(adapter.validate_python(value), mode="json", exclude_none=True)
        attributes[name] = attribute(plain)
    return attributes

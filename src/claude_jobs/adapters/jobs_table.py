"""The job repository on DynamoDB: job items, the per-tenant index and idempotency records."""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..clock import epoch, iso
from ..errors import (
    IdempotencyReplayError,
    InvalidCursorError,
    JobNotFoundError,
    SessionConflictError,
    TenantAtShareError,
    TenantLimitError,
    TransitionConflictError,
)
from ..models import Job, JobStatus, SessionRecord
from ..ports import (
    IdempotencyClaim,
    JobControl,
    JobPage,
    SessionClaim,
    TenantUsage,
    Transition,
)
from ..resources import JOBS_TABLE, TENANT_SHARDS
from ..state import slot_changes
from .dynamo import from_item, serialize, to_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from pydantic import TypeAdapter

TENANT_INDEX = JOBS_TABLE.indexes[0].name
_IDEM_PREFIX = "idem#"
#: A tenant's usage counter (`pending`, `running`): the same table, so that it changes in one
#: transaction with the job. No GSI attributes, no TTL: never listed, never expires.
_USAGE_PREFIX = "usage#"
#: A conversation (`session#<id>`): its tenant, jobs and the job that holds it. No status (the
#: notifier ignores it), no GSI attributes (never listed); it expires with its transcripts.
_SESSION_PREFIX = "session#"
_INTERNAL_PREFIXES = (_IDEM_PREFIX, _USAGE_PREFIX, _SESSION_PREFIX)
#: Tries of a transaction that DynamoDB cancels because another one held the same item (a
#: tenant's counter is shared by its jobs' writes).
TRANSACTION_TRIES = 6


def usage_item_id(tenant_id: str) -> str:
    return f"{_USAGE_PREFIX}{tenant_id}"


class _Cancelled(Exception):
    """A transaction cancelled by a condition: the reason code of each item, in order."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(", ".join(codes))
        self.codes = codes

    def failed(self, index: int) -> bool:
        return len(self.codes) > index and self.codes[index] == "ConditionalCheckFailed"


def session_item_id(session_id: str) -> str:
    return f"{_SESSION_PREFIX}{session_id}"


def _session_condition(
    tenant_id: str, expected_active: str | None
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The condition of a write that continues (or deletes) a session: it exists, is the
    tenant's, is not deleted, and is held by the job it was read with (or by none)."""
    values: dict[str, dict[str, Any]] = {":tenant": {"S": tenant_id}}
    held = "attribute_not_exists(active_job)"
    if expected_active is not None:
        values[":expected"] = {"S": expected_active}
        held = f"({held} OR active_job = :expected)"
    condition = (
        "attribute_exists(job_id) AND tenant_id = :tenant AND attribute_not_exists(deleted) "
        f"AND {held}"
    )
    return condition, values


def idempotency_item_id(tenant_id: str, key: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}\x00{key}".encode()).hexdigest()
    return f"{_IDEM_PREFIX}{digest}"


def _attribute(value: Any) -> dict[str, Any]:
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


_CREATED_KEY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#[A-Za-z0-9_-]{1,128}$")


def _positions(cursor: Mapping[str, Any] | None) -> list[str | None]:
    """Each shard's position from a cursor this repository returned; InvalidCursorError for
    anything else (a forged token must not reach DynamoDB as a 5xx)."""
    if cursor is None:
        return [""] * TENANT_SHARDS
    positions = cursor.get("p") if set(cursor) == {"p"} else None
    if not isinstance(positions, list) or len(positions) != TENANT_SHARDS:
        raise InvalidCursorError("not a position in this listing")
    for position in positions:
        if position is None or position == "":
            continue
        if not isinstance(position, str) or not _CREATED_KEY.match(position):
            raise InvalidCursorError("not a position in this listing")
    if all(p is None for p in positions):
        raise InvalidCursorError("not a position in this listing")
    return list(positions)


def job_to_item(job: Job, retention_days: int) -> dict[str, Any]:
    data = job.model_dump(mode="json", exclude_none=True)
    item = {name: _attribute(value) for name, value in data.items()}
    item["tenant_shard"] = serialize(tenant_shard(job.tenant_id, job.job_id))
    item["created_key"] = serialize(f"{iso(job.created_at)}#{job.job_id}")
    item["expires_at"] = serialize(epoch(job.created_at + timedelta(days=retention_days)))
    return item


#: Job fields that hold structured values: JSON text in the item (maps in items written
#: before documents were opaque, which still read).
_STRUCTURED_FIELDS = frozenset(
    name
    for name, info in Job.model_fields.items()
    if name not in ("job_id", "tenant_id", "status", "prompt", "system_prompt", "source")
    and info.annotation not in (int, str, bool, int | None, str | None)
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


def _update_parts(
    set_fields: Mapping[str, Any], remove_fields: Sequence[str], add_attempts: int
) -> tuple[dict[str, dict[str, Any] | None], str, dict[str, str], dict[str, Any]]:
    """A job write as (attribute values, update expression, names, values): the only place
    job writes become DynamoDB expressions. Every write bumps `version`."""
    names: dict[str, str] = {"#version": "version"}
    values: dict[str, Any] = {":one": {"N": "1"}, ":zero": {"N": "0"}}
    sets = ["#version = if_not_exists(#version, :zero) + :one"]
    removes: list[str] = []
    attributes = field_attributes(set_fields)
    for field in remove_fields:
        check_field(field)
        attributes.setdefault(field, None)
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


def _limit(max_pending: int | None) -> TenantLimitError:
    return TenantLimitError(
        f"This tenant already has {max_pending} pending (queued or running) jobs, as many as "
        "this deployment allows; submit again once some have finished."
    )


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
        attributes[name] = _attribute(plain)
    return attributes


class DynamoJobRepository:
    def __init__(self, client: DynamoDBClient, table_name: str, retention_days: int = 30) -> None:
        self._client = client
        self._table = table_name
        self._retention_days = retention_days

    # ------------------------------------------------------------ create / read

    def create(
        self,
        job: Job,
        claim: IdempotencyClaim | None = None,
        *,
        max_pending: int | None = None,
        session: SessionClaim | None = None,
    ) -> None:
        extra = [self._session_write(session)] if session is not None else []
        put_job: dict[str, Any] = {
            "TableName": self._table,
            "Item": job_to_item(job, self._retention_days),
            "ConditionExpression": "attribute_not_exists(job_id)",
        }
        count = self._usage_update(job.tenant_id, pending=1)
        if max_pending is not None:
            count["ConditionExpression"] = "attribute_not_exists(pending) OR pending < :cap"
            count["ExpressionAttributeValues"][":cap"] = serialize(max_pending)
        if claim is None:
            try:
                self._transact([{"Put": put_job}, {"Update": count}, *extra])
            except _Cancelled as cancelled:
                if cancelled.failed(2):
                    raise SessionConflictError(
                        f"session {session and session.session_id}"
                    ) from None
                if cancelled.failed(1):
                    raise _limit(max_pending) from None
                raise
            return
        idem_id = idempotency_item_id(claim.tenant_id, claim.key)
        put_claim: dict[str, Any] = {
            "TableName": self._table,
            "Item": to_item(
                {
                    "job_id": idem_id,
                    "target_job_id": job.job_id,
                    "body_hash": claim.body_hash,
                    "expires_at": claim.expires_at,
                }
            ),
            # A record past its expiry is free even before TTL deletes it.
            "ConditionExpression": "attribute_not_exists(job_id) OR expires_at < :now",
            "ExpressionAttributeValues": {":now": serialize(epoch(job.created_at))},
        }
        try:
            self._transact([{"Put": put_claim}, {"Put": put_job}, {"Update": count}, *extra])
        except _Cancelled as cancelled:
            # A replay first: the key's job was counted when it was created.
            if cancelled.failed(0):
                held = self._get_raw(idem_id, consistent=True)
                if held is None:  # expired and deleted in between: the caller may retry
                    raise
                record = from_item(held)
                raise IdempotencyReplayError(record["target_job_id"], record["body_hash"]) from None
            if cancelled.failed(3):
                raise SessionConflictError(f"session {session and session.session_id}") from None
            if cancelled.failed(2):
                raise _limit(max_pending) from None
            raise

    def _session_write(self, session: SessionClaim) -> dict[str, Any]:
        """The transaction item that creates or continues a session for a new job."""
        key = {"job_id": {"S": session_item_id(session.session_id)}}
        at = {"S": iso(session.at)}
        if session.new:
            return {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        **key,
                        "session_id": {"S": session.session_id},
                        "tenant_id": {"S": session.tenant_id},
                        "created_at": at,
                        "updated_at": at,
                        "job_ids": {"L": [{"S": session.job_id}]},
                        "active_job": {"S": session.job_id},
                        "expires_at": serialize(session.expires_at),
                    },
                    "ConditionExpression": "attribute_not_exists(job_id)",
                }
            }
        condition, values = _session_condition(session.tenant_id, session.expected_active)
        return {
            "Update": {
                "TableName": self._table,
                "Key": key,
                "UpdateExpression": (
                    "SET active_job = :job, updated_at = :at, expires_at = :exp, "
                    "job_ids = list_append(if_not_exists(job_ids, :none), :jobs)"
                ),
                "ConditionExpression": condition,
                "ExpressionAttributeValues": {
                    **values,
                    ":job": {"S": session.job_id},
                    ":at": at,
                    ":exp": serialize(session.expires_at),
                    ":none": {"L": []},
                    ":jobs": {"L": [{"S": session.job_id}]},
                },
            }
        }

    # ------------------------------------------------------------ sessions

    def get_session(self, session_id: str) -> SessionRecord | None:
        item = self._get_raw(session_item_id(session_id), consistent=True)
        if item is None or "tenant_id" not in item:
            return None
        data = from_item(item)
        data.pop("job_id", None)
        return SessionRecord.model_validate(data)

    def mark_session_deleted(
        self, session_id: str, tenant_id: str, expected_active: str | None
    ) -> None:
        condition, values = _session_condition(tenant_id, expected_active)
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": session_item_id(session_id)}},
                UpdateExpression="SET deleted = :yes",
                ConditionExpression=condition,
                ExpressionAttributeValues={**values, ":yes": {"BOOL": True}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise SessionConflictError(f"session {session_id} changed") from None

    def remove_session(self, session_id: str) -> None:
        self._client.delete_item(
            TableName=self._table, Key={"job_id": {"S": session_item_id(session_id)}}
        )

    def _usage_update(
        self, tenant_id: str, *, pending: int = 0, running: int = 0
    ) -> dict[str, Any]:
        """The transaction item that moves a tenant's counts by (pending, running)."""
        return {
            "TableName": self._table,
            "Key": {"job_id": {"S": usage_item_id(tenant_id)}},
            "UpdateExpression": "ADD pending :p, running :r",
            "ExpressionAttributeValues": {":p": serialize(pending), ":r": serialize(running)},
        }

    def _transact(self, items: list[dict[str, Any]]) -> None:
        """One TransactWriteItems: retried while another transaction holds one of its items
        (nothing was written then); _Cancelled when a condition does not hold. Each try has
        its own request token, so a retry by the SDK after a lost answer is not applied
        twice."""
        for attempt in range(TRANSACTION_TRIES):
            try:
                self._client.transact_write_items(
                    TransactItems=items,  # type: ignore[arg-type]
                    ClientRequestToken=uuid.uuid4().hex,
                )
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                codes = [
                    str(r.get("Code") or "None")
                    for r in exc.response.get("CancellationReasons", [])
                ]
                if "TransactionConflict" in codes and attempt + 1 < TRANSACTION_TRIES:
                    time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311
                    continue
                if "ConditionalCheckFailed" in codes:
                    raise _Cancelled(codes) from None
                raise

    def tenant_usage(self, tenant_id: str) -> TenantUsage:
        item = self._get_raw(usage_item_id(tenant_id), consistent=True) or {}
        data = from_item(item)
        return TenantUsage(int(data.get("pending", 0)), int(data.get("running", 0)))

    def _get_raw(self, job_id: str, consistent: bool = False) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table, Key={"job_id": {"S": job_id}}, ConsistentRead=consistent
        )
        return response.get("Item")

    def get(self, job_id: str) -> Job | None:
        if job_id.startswith(_INTERNAL_PREFIXES):
            return None
        item = self._get_raw(job_id, consistent=True)
        return None if item is None else item_to_job(item)

    def control(self, job_id: str) -> JobControl | None:
        if job_id.startswith(_INTERNAL_PREFIXES):
            return None
        item = self._client.get_item(
            TableName=self._table,
            Key={"job_id": {"S": job_id}},
            ProjectionExpression="#s, cancel_requested, attempts",
            ExpressionAttributeNames={"#s": "status"},
            ConsistentRead=False,
        ).get("Item")
        if item is None:
            return None
        data = from_item(item)
        return JobControl(
            status=JobStatus(data["status"]),
            cancel_requested=bool(data.get("cancel_requested", False)),
            attempts=int(data.get("attempts", 0)),
        )

    def list_for_tenant(
        self, tenant_id: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> JobPage:
        """The tenant's jobs newest first: up to `limit` keys from each shard of the index,
        merged, the newest `limit` read by key (one BatchGetItem). The cursor holds each
        shard's position: the last key taken from it, "" (from the top) or None (done)."""
        positions = _positions(cursor)
        heads: list[tuple[str, int]] = []  # (created_key, shard) of candidates
        more: dict[int, bool] = {}
        for shard, position in enumerate(positions):
            if position is None:
                continue
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": TENANT_INDEX,
                "KeyConditionExpression": "tenant_shard = :s",
                "ExpressionAttributeValues": {":s": {"S": shard_key(tenant_id, shard)}},
                "ScanIndexForward": False,
                "Limit": limit,
            }
            if position:
                kwargs["ExclusiveStartKey"] = {
                    "job_id": {"S": position.split("#", 1)[1]},
                    "tenant_shard": {"S": shard_key(tenant_id, shard)},
                    "created_key": {"S": position},
                }
            response = self._client.query(**kwargs)
            keys = [i["created_key"]["S"] for i in response.get("Items", [])]
            heads += [(key, shard) for key in keys]
            more[shard] = "LastEvaluatedKey" in response
        heads.sort(reverse=True)
        taken, rest = heads[:limit], heads[limit:]
        after = list(positions)
        for key, shard in taken:
            after[shard] = key  # taken newest first: the last one is the oldest
        left = {shard for _, shard in rest}
        for shard in more:
            if not more[shard] and shard not in left:
                after[shard] = None  # everything of this shard has been returned
        jobs = self._get_many([key.split("#", 1)[1] for key, _ in taken])
        done = all(p is None for p in after)
        return JobPage(jobs=jobs, cursor=None if done else {"p": after})

    def _get_many(self, job_ids: list[str]) -> list[Job]:
        """Jobs by id in the given order (eventually consistent: a listing may lag a write by
        a moment, as the index itself does)."""
        found: dict[str, Job] = {}
        pending: list[dict[str, Any]] = [{"job_id": {"S": i}} for i in job_ids]
        while pending:
            response = self._client.batch_get_item(
                RequestItems={self._table: {"Keys": pending[:100]}}
            )
            for item in response.get("Responses", {}).get(self._table, []):
                job = item_to_job(item)
                found[job.job_id] = job
            unprocessed: Any = response.get("UnprocessedKeys", {}).get(self._table, {})
            pending = list(unprocessed.get("Keys", [])) + pending[100:]
        return [found[i] for i in job_ids if i in found]

    # ------------------------------------------------------------ writes

    def transition(self, change: Transition) -> Job:
        sources = change.sources()
        if not sources:
            raise TransitionConflictError(f"no status may become {change.to}")
        if any(slot_changes(source, change.to) != (0, 0) for source in sources):
            return self._counted_write(change, sources)
        return self._write(
            change.job_id,
            set_fields=change.fields(),
            remove_fields=change.remove_fields,
            add_attempts=change.add_attempts,
            statuses=sources,
            expected_version=change.expected_version,
            expected_attempts=change.expected_attempts,
        )

    def update(
        self,
        job_id: str,
        *,
        set_fields: Mapping[str, Any],
        expected_status: Sequence[JobStatus],
    ) -> Job:
        return self._write(job_id, set_fields=set_fields, statuses=list(expected_status))

    def _write(
        self,
        job_id: str,
        *,
        set_fields: Mapping[str, Any],
        statuses: Sequence[JobStatus],
        remove_fields: Sequence[str] = (),
        add_attempts: int = 0,
        expected_version: int | None = None,
        expected_attempts: int | None = None,
    ) -> Job:
        """One conditional UpdateItem (a job write that changes no tenant counts)."""
        _, expression, names, values = _update_parts(set_fields, remove_fields, add_attempts)
        names["#status"] = "status"
        status_values = {f":st{i}": {"S": s.value} for i, s in enumerate(statuses)}
        values.update(status_values)
        conditions = ["attribute_exists(job_id)", f"#status IN ({', '.join(status_values)})"]
        if expected_version is not None:
            values[":c_version"] = serialize(expected_version)
            conditions.append("#version = :c_version")
        if expected_attempts is not None:
            names["#attempts"] = "attempts"
            values[":c_attempts"] = serialize(expected_attempts)
            conditions.append("#attempts = :c_attempts")
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            if not old or job_id.startswith(_IDEM_PREFIX):
                raise JobNotFoundError(f"job {job_id} not found") from None
            current = item_to_job(old)
            raise TransitionConflictError(
                f"job {job_id} is {current.status}", current=current
            ) from None
        return item_to_job(response["Attributes"])

    def _counted_write(self, change: Transition, statuses: Sequence[JobStatus]) -> Job:
        """A transition that changes its tenant's counts: one transaction of the job's write
        (conditional on the version just read, so the counts move from the status the job was
        really in) and the counter's, the running share checked there. Exactly once: if the
        job's write does not happen, neither does the count's."""
        job_id, target = change.job_id, change.to
        expected_version, expected_attempts = change.expected_version, change.expected_attempts
        running_share = change.running_share
        attributes, expression, names, values = _update_parts(
            change.fields(), change.remove_fields, change.add_attempts
        )
        current: Job | None = None
        for _ in range(TRANSACTION_TRIES):
            item = None if job_id.startswith(_INTERNAL_PREFIXES) else self._get_raw(job_id, True)
            if item is None:
                raise JobNotFoundError(f"job {job_id} not found")
            current = item_to_job(item)
            if (
                current.status not in statuses
                or (expected_version is not None and current.version != expected_version)
                or (expected_attempts is not None and current.attempts != expected_attempts)
            ):
                raise TransitionConflictError(f"job {job_id} is {current.status}", current=current)
            pending, running = slot_changes(current.status, target)
            count = self._usage_update(current.tenant_id, pending=pending, running=running)
            if running > 0 and running_share is not None:
                count["ConditionExpression"] = "attribute_not_exists(running) OR running < :share"
                count["ExpressionAttributeValues"][":share"] = serialize(running_share)
            update = {
                "TableName": self._table,
                "Key": {"job_id": {"S": job_id}},
                "UpdateExpression": expression,
                "ConditionExpression": "attribute_exists(job_id) AND #version = :c_version",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    **values,
                    ":c_version": serialize(current.version),
                },
            }
            try:
                self._transact([{"Update": update}, {"Update": count}])
            except _Cancelled as cancelled:
                if cancelled.failed(0):
                    continue  # the job changed since it was read: look again
                raise TenantAtShareError(
                    f"the tenant runs {running_share} jobs already (its share)"
                ) from None
            written = dict(item)
            for name, value in attributes.items():
                if value is None:
                    written.pop(name, None)
                else:
                    written[name] = value
            written["version"] = serialize(current.version + 1)
            written["attempts"] = serialize(current.attempts + change.add_attempts)
            return item_to_job(written)
        raise TransitionConflictError(f"job {job_id} kept changing", current=current)

    def fail_dispatch(
        self, job_id: str, claim: IdempotencyClaim | None, message: str, at: datetime
    ) -> None:
        """`queued → failed` with the tenant's pending count, and the key freed, in one
        transaction."""
        item = self._get_raw(job_id, consistent=True)
        if item is None:
            raise JobNotFoundError(f"job {job_id} not found")
        tenant_id = from_item({"tenant_id": item["tenant_id"]})["tenant_id"]
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"job_id": {"S": job_id}},
            "UpdateExpression": (
                "SET #status = :failed, #error = :error, #finished = :at,"
                " #version = #version + :one"
            ),
            "ConditionExpression": "#status = :queued",
            "ExpressionAttributeNames": {
                "#status": "status",
                "#error": "error",
                "#version": "version",
                "#finished": "finished_at",
            },
            "ExpressionAttributeValues": {
                ":at": {"S": at.isoformat()},
                ":failed": {"S": JobStatus.FAILED.value},
                ":queued": {"S": JobStatus.QUEUED.value},
                ":error": _attribute({"code": "dispatch_failed", "message": message}),
                ":one": {"N": "1"},
            },
        }
        items: list[dict[str, Any]] = [
            {"Update": update},
            {"Update": self._usage_update(tenant_id, pending=-1)},
        ]
        if claim is not None:
            items.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"job_id": {"S": idempotency_item_id(claim.tenant_id, claim.key)}},
                        "ConditionExpression": "target_job_id = :job",
                        "ExpressionAttributeValues": {":job": {"S": job_id}},
                    }
                }
            )
        try:
            self._transact(items)
        except _Cancelled as cancelled:
            current = item_to_job(item)
            raise TransitionConflictError(
                f"job {job_id} is no longer queued ({cancelled})", current=current
            ) from None

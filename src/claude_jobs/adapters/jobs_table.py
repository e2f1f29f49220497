"""The job repository on DynamoDB: job items, the per-tenant index and idempotency records.

The table's other items have their own modules: `job_items` (a job as an item, a write as an
expression), `sessions_table`, `tenant_usage` and `transactions`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..clock import epoch
from ..errors import (
    IdempotencyReplayError,
    JobNotFoundError,
    SessionConflictError,
    TenantAtShareError,
    TransitionConflictError,
)
from ..models import Job, JobStatus
from ..ports import IdempotencyClaim, JobControl, JobPage, SessionClaim, TenantUsage, Transition
from ..state import slot_changes
from .dynamo import from_item, serialize, to_item
from .job_items import (
    APPROVAL_INDEX,
    APPROVAL_TENANT,
    IDEM_PREFIX,
    INTERNAL_PREFIXES,
    OPEN_SHARD,
    approval_positions,
    attribute,
    cursor_positions,
    update_parts,
)

# Names imported `as` themselves are re-exported: this module was their home.
from .job_items import TENANT_INDEX as TENANT_INDEX
from .job_items import check_field as check_field
from .job_items import field_attributes as field_attributes
from .job_items import idempotency_item_id as idempotency_item_id
from .job_items import item_to_job as item_to_job
from .job_items import job_to_item as job_to_item
from .job_items import shard_key as shard_key
from .job_items import tenant_shard as tenant_shard
from .sessions_table import DynamoSessionRepository, session_write
from .sessions_table import session_item_id as session_item_id
from .tenant_usage import limit_error, read_usage, usage_update
from .tenant_usage import usage_item_id as usage_item_id
from .transactions import TRANSACTION_TRIES as TRANSACTION_TRIES
from .transactions import Cancelled, transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class DynamoJobRepository:
    def __init__(self, client: DynamoDBClient, table_name: str, retention_days: int = 30) -> None:
        self._client = client
        self._table = table_name
        self._retention_days = retention_days
        #: The sessions `create` takes: items of the same table.
        self.sessions = DynamoSessionRepository(client, table_name)

    # ------------------------------------------------------------ create / read

    def create(
        self,
        job: Job,
        claim: IdempotencyClaim | None = None,
        *,
        max_pending: int | None = None,
        session: SessionClaim | None = None,
    ) -> None:
        extra = [session_write(self._table, session)] if session is not None else []
        put_job: dict[str, Any] = {
            "TableName": self._table,
            "Item": job_to_item(job, self._retention_days),
            "ConditionExpression": "attribute_not_exists(job_id)",
        }
        count = usage_update(self._table, job.tenant_id, pending=1)
        if max_pending is not None:
            count["ConditionExpression"] = "attribute_not_exists(pending) OR pending < :cap"
            count["ExpressionAttributeValues"][":cap"] = serialize(max_pending)
        if claim is None:
            try:
                transact(self._client, [{"Put": put_job}, {"Update": count}, *extra])
            except Cancelled as cancelled:
                if cancelled.failed(2):
                    raise SessionConflictError(
                        f"session {session and session.session_id}"
                    ) from None
                if cancelled.failed(1):
                    raise limit_error(max_pending) from None
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
            transact(
                self._client, [{"Put": put_claim}, {"Put": put_job}, {"Update": count}, *extra]
            )
        except Cancelled as cancelled:
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
                raise limit_error(max_pending) from None
            raise

    def tenant_usage(self, tenant_id: str) -> TenantUsage:
        return read_usage(self._client, self._table, tenant_id)

    def _get_raw(self, job_id: str, consistent: bool = False) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table, Key={"job_id": {"S": job_id}}, ConsistentRead=consistent
        )
        return response.get("Item")

    def get(self, job_id: str) -> Job | None:
        if job_id.startswith(INTERNAL_PREFIXES):
            return None
        item = self._get_raw(job_id, consistent=True)
        return None if item is None else item_to_job(item)

    def control(self, job_id: str) -> JobControl | None:
        if job_id.startswith(INTERNAL_PREFIXES):
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
        positions = cursor_positions(cursor)
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

    def list_awaiting_approval(
        self, tenant_id: str, limit: int, cursor: Mapping[str, Any] | None = None
    ) -> JobPage:
        """One Query of the sparse approval index (oldest request first), then the jobs by
        key; a job that moved on since the index was written is left out."""
        after = approval_positions(cursor)
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": APPROVAL_INDEX,
            "KeyConditionExpression": "#t = :t",
            "ExpressionAttributeNames": {"#t": APPROVAL_TENANT},
            "ExpressionAttributeValues": {":t": {"S": tenant_id}},
            "ScanIndexForward": True,
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                "job_id": {"S": after.split("#", 1)[1]},
                APPROVAL_TENANT: {"S": tenant_id},
                "approval_key": {"S": after},
            }
        response = self._client.query(**kwargs)
        keys = [item["approval_key"]["S"] for item in response.get("Items", [])]
        jobs = self._get_many([key.split("#", 1)[1] for key in keys])
        waiting = [
            j for j in jobs if j.status is JobStatus.AWAITING_APPROVAL and j.tenant_id == tenant_id
        ]
        more = "LastEvaluatedKey" in response and keys
        return JobPage(jobs=waiting, cursor={"a": keys[-1]} if more else None)

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
            change=change,
        )

    def update(
        self,
        job_id: str,
        *,
        set_fields: Mapping[str, Any],
        expected_status: Sequence[JobStatus],
    ) -> Job:
        return self._write(job_id, set_fields=set_fields, statuses=list(expected_status))

    def journal_spend(self, job_id: str, attempts: int, usd: float) -> bool:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET #u = :usd",
                ConditionExpression="#status = :running AND #attempts = :attempts",
                ExpressionAttributeNames={
                    "#u": "unrecorded_usd",
                    "#status": "status",
                    "#attempts": "attempts",
                },
                ExpressionAttributeValues={
                    ":usd": serialize(usd),
                    ":running": {"S": JobStatus.RUNNING.value},
                    ":attempts": serialize(attempts),
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

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
        change: Transition | None = None,
    ) -> Job:
        """One conditional UpdateItem (a job write that changes no tenant counts)."""
        _, expression, names, values = update_parts(set_fields, remove_fields, add_attempts, change)
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
            if not old or job_id.startswith(IDEM_PREFIX):
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
        attributes, expression, names, values = update_parts(
            change.fields(), change.remove_fields, change.add_attempts, change
        )
        current: Job | None = None
        for _ in range(TRANSACTION_TRIES):
            item = None if job_id.startswith(INTERNAL_PREFIXES) else self._get_raw(job_id, True)
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
            count = usage_update(self._table, current.tenant_id, pending=pending, running=running)
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
                transact(self._client, [{"Update": update}, {"Update": count}])
            except Cancelled as cancelled:
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
                " #version = #version + :one REMOVE #open"
            ),
            "ConditionExpression": "#status = :queued",
            "ExpressionAttributeNames": {
                "#status": "status",
                "#error": "error",
                "#version": "version",
                "#finished": "finished_at",
                "#open": OPEN_SHARD,
            },
            "ExpressionAttributeValues": {
                ":at": {"S": at.isoformat()},
                ":failed": {"S": JobStatus.FAILED.value},
                ":queued": {"S": JobStatus.QUEUED.value},
                ":error": attribute({"code": "dispatch_failed", "message": message}),
                ":one": {"N": "1"},
            },
        }
        items: list[dict[str, Any]] = [
            {"Update": update},
            {"Update": usage_update(self._table, tenant_id, pending=-1)},
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
            transact(self._client, items)
        except Cancelled as cancelled:
            current = item_to_job(item)
            raise TransitionConflictError(
                f"job {job_id} is no longer queued ({cancelled})", current=current
            ) from None

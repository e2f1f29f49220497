"""Definitions of the stateful resources: the one source for the CDK app and the local stack.

Names, key schemas, indexes, TTL attributes and queue settings live here; `infra/` turns them
into CloudFormation and `claude_jobs_tools.provision` creates them in the emulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .job_status import TERMINAL_STATUSES, JobStatus

WORKER_TIMEOUT_SECONDS = 900

#: API Gateway's TOKEN authorizer refuses (401) an Authorization header of any other shape
#: without invoking the authorizer function. The CDK app and the local front both use it.
AUTHORIZATION_HEADER_PATTERN = r"^[Bb]earer [A-Za-z0-9._~+/=-]{16,512}$"
#: Margin kept between a job's deadline and the Lambda's own timeout.
WORKER_DEADLINE_MARGIN_SECONDS = 30


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = "S"  # DynamoDB scalar type: S, N or B


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: Attribute
    sort_key: Attribute | None = None
    projection: str = "ALL"  # ALL | KEYS_ONLY


@dataclass(frozen=True)
class Table:
    logical_id: str
    name_suffix: str  # the physical name is f"{prefix}-{name_suffix}"
    partition_key: Attribute
    sort_key: Attribute | None = None
    ttl_attribute: str | None = None
    indexes: tuple[Index, ...] = field(default_factory=tuple)
    stream_view_type: str | None = None  # e.g. NEW_AND_OLD_IMAGES: feeds the notifier

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.name_suffix}"

    def index(self, name: str) -> Index:
        """The index called `name` (a KeyError names it when the table has none)."""
        for index in self.indexes:
            if index.name == name:
                return index
        raise KeyError(f"{self.logical_id} has no index {name!r}")

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        """Every attribute used in a key of the table or one of its indexes, once."""
        seen: dict[str, Attribute] = {}
        keys = [self.partition_key, self.sort_key]
        for index in self.indexes:
            keys += [index.partition_key, index.sort_key]
        for attr in keys:
            if attr is not None:
                seen.setdefault(attr.name, attr)
        return tuple(seen.values())


@dataclass(frozen=True)
class Queue:
    logical_id: str
    name_suffix: str
    visibility_timeout_seconds: int
    retention_seconds: int
    max_receive_count: int | None = None  # set on a queue that redrives to the DLQ
    dlq_suffix: str | None = None

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.name_suffix}"


# ---------------------------------------------------------------- tables

#: Jobs and idempotency records. Idempotency items (`job_id` = "idem#…") carry no GSI
#: attributes, so they never show in the tenant listing.
JOBS_TABLE = Table(
    logical_id="JobsTable",
    name_suffix="jobs",
    partition_key=Attribute("job_id"),
    ttl_attribute="expires_at",
    # Terminal transitions reach the notifier (completion events, webhooks) through the stream.
    stream_view_type="NEW_AND_OLD_IMAGES",
    indexes=(
        # One tenant's jobs, newest first, spread over `TENANT_SHARDS` partitions
        # ("<tenant>#<n>", n from a hash of the job id) so that no tenant's writes meet in one
        # index partition. Keys only: an index copy is written when a job is created (and
        # deleted), not on every update; the list reads the small items by key.
        Index(
            name="by_tenant_shard",
            partition_key=Attribute("tenant_shard"),
            sort_key=Attribute("created_key"),  # "<created_at ISO>#<job_id>": newest first
            projection="KEYS_ONLY",
        ),
        # Sparse: only jobs awaiting a decision have its keys (their tenant, and
        # "<requested_at ISO>#<job_id>"), so `GET /v1/approvals` reads no other job.
        Index(
            name="by_approval",
            partition_key=Attribute("approval_tenant"),
            sort_key=Attribute("approval_key"),
            projection="KEYS_ONLY",
        ),
        # Sparse: only unfinished jobs (queued, running, awaiting_approval) and the tenants'
        # usage counters have its key ("open#<n>", n from a hash of the item's key), so the
        # reconciler reads what it acts on and never the finished jobs the table keeps for
        # their retention. Keys only: an index copy is written when a job is created and
        # deleted when it ends, not on every update.
        Index(
            name="by_open",
            partition_key=Attribute("open_shard"),
            projection="KEYS_ONLY",
        ),
    ),
)
#: Index partitions per tenant (changing it needs a backfill of `tenant_shard`).
TENANT_SHARDS = 4
#: Partitions of the unfinished-jobs index (`by_open`): each holds at most 1,000 index writes a
#: second, and a job makes two (created, ended). Changing it needs a backfill of `open_shard`.
OPEN_SHARDS = 8

API_KEYS_TABLE = Table(
    logical_id="ApiKeysTable",
    name_suffix="api-keys",
    partition_key=Attribute("key_hash"),
    indexes=(Index(name="by_key_id", partition_key=Attribute("key_id")),),
)

#: Progress events of jobs (`GET /v1/jobs/{id}/events`): one item per batch the worker writes,
#: keyed by the job and the batch's first `seq` (`adapters/events_table.py`). Separate from the
#: jobs table so that event writes neither reach its stream (the notifier) nor its index.
EVENTS_TABLE = Table(
    logical_id="EventsTable",
    name_suffix="events",
    partition_key=Attribute("job_id"),
    sort_key=Attribute("seq", "N"),
    ttl_attribute="expires_at",
)

TABLES = (JOBS_TABLE, API_KEYS_TABLE, EVENTS_TABLE)

# ---------------------------------------------------------------- queues

JOBS_DLQ = Queue(
    logical_id="JobsDlq",
    name_suffix="jobs-dlq",
    visibility_timeout_seconds=60,
    retention_seconds=14 * 24 * 3600,
)

JOBS_QUEUE = Queue(
    logical_id="JobsQueue",
    name_suffix="jobs",
    # At least 6 times the worker's timeout, as AWS recommends for SQS event sources.
    visibility_timeout_seconds=6 * WORKER_TIMEOUT_SECONDS,
    retention_seconds=4 * 24 * 3600,
    max_receive_count=5,
    dlq_suffix=JOBS_DLQ.name_suffix,
)


#: The results bucket's objects (large result texts) expire after this many days.
RESULTS_EXPIRY_DAYS = 30
#: Result texts stored before documents were tenant-scoped (read only now).
RESULTS_PREFIX = "results/"
#: Job documents too large for the job item: `tenant/<tenant>/jobs/<job>/<name>`, expiring
#: with the results.
DOCUMENTS_PREFIX = "tenant/"
#: Session transcripts (claude-agent-sdk SessionStore parts): `sessions/<tenant>/<session>/…`,
#: expiring after the deployment's session retention (default below).
SESSIONS_PREFIX = "sessions/"
SESSION_RETENTION_DAYS = 30

#: Uploads (`POST /v1/uploads`): `uploads/<tenant>/<upload_id>/{upload.json,content}` in the
#: results bucket. An upload may be used by a job for `UPLOAD_TTL_SECONDS` after its creation;
#: the bucket's lifecycle rule deletes it after `UPLOADS_EXPIRY_DAYS`, so a job submitted just
#: before its upload's TTL still finds the file for at least a day more.
UPLOADS_PREFIX = "uploads/"
UPLOAD_TTL_SECONDS = 24 * 3600
UPLOADS_EXPIRY_DAYS = 2

#: Triggers: malformed or undeliverable trigger events are kept here, with their reason.
TRIGGER_DLQ = Queue(
    logical_id="TriggerDlq",
    name_suffix="trigger-dlq",
    visibility_timeout_seconds=60,
    retention_seconds=14 * 24 * 3600,
)

#: Notifier: stream records whose processing kept failing after retries and bisection are
#: described here (the on-failure destination of the stream's event source, in AWS and in the
#: local stack's stand-in for it).
NOTIFIER_DLQ = Queue(
    logical_id="NotifierDlq",
    name_suffix="notifier-dlq",
    visibility_timeout_seconds=60,
    retention_seconds=14 * 24 * 3600,
)

#: Webhooks: one message per delivery, consumed by the webhook function a few at a time. Each
#: attempt has a total deadline; a failed one comes back after a backoff set on the message;
#: after WEBHOOK_MAX_ATTEMPTS receives the message goes to the webhook DLQ.
WEBHOOK_DEADLINE_SECONDS = 10
WEBHOOK_BATCH_SIZE = 3
WEBHOOK_TIMEOUT_SECONDS = WEBHOOK_BATCH_SIZE * WEBHOOK_DEADLINE_SECONDS + 15
WEBHOOK_MAX_ATTEMPTS = 5

WEBHOOK_DLQ = Queue(
    logical_id="WebhookDlq",
    name_suffix="webhooks-dlq",
    visibility_timeout_seconds=60,
    retention_seconds=14 * 24 * 3600,
)

WEBHOOK_QUEUE = Queue(
    logical_id="WebhookQueue",
    name_suffix="webhooks",
    # At least 6 times the function's timeout, as AWS recommends for SQS event sources.
    visibility_timeout_seconds=6 * WEBHOOK_TIMEOUT_SECONDS,
    retention_seconds=4 * 24 * 3600,
    max_receive_count=WEBHOOK_MAX_ATTEMPTS,
    dlq_suffix=WEBHOOK_DLQ.name_suffix,
)

#: Every queue; each DLQ before the queue that redrives to it.
QUEUES = (JOBS_DLQ, JOBS_QUEUE, TRIGGER_DLQ, NOTIFIER_DLQ, WEBHOOK_DLQ, WEBHOOK_QUEUE)

#: The trigger function is invoked asynchronously (S3, EventBridge): an invocation that fails
#: is retried this many times, then Lambda's on-failure record goes to the trigger DLQ.
TRIGGER_RETRY_ATTEMPTS = 2


@dataclass(frozen=True)
class StreamSource:
    """How a function consumes a DynamoDB stream (Lambda's event source mapping settings)."""

    batch_size: int
    #: A batch whose invocation fails is split in two before it is retried, down to the one
    #: record that fails; splitting uses no retry attempt.
    bisect_batch_on_error: bool
    #: Retries of a failing batch (after bisection: of the failing record) before it is sent
    #: to the on-failure destination and skipped.
    retry_attempts: int
    #: Records older than this are sent to the on-failure destination without an invocation.
    max_record_age_seconds: int
    #: Lambda's event filtering: the patterns a record must match one of to reach the function
    #: (none: every record). Any other record is dropped before batching, uninvoked and
    #: unbilled. EventBridge pattern syntax, matched against the stream record.
    filters: tuple[Mapping[str, Any], ...] = ()


def _new_status(*statuses: JobStatus, **more: list[str]) -> Mapping[str, Any]:
    """A pattern: the record's new image has one of `statuses` (and `more` attributes)."""
    image: dict[str, Any] = {"status": {"S": sorted(s.value for s in statuses)}}
    image |= {name: {"S": values} for name, values in more.items()}
    return {"dynamodb": {"NewImage": image}}


#: The jobs table's stream → the notifier (partial batch responses are always on). It acts on
#: a job that ends or waits for a decision, and on a job a GitHub event started that begins to
#: run (`claude_jobs.notify.processor`); only those records invoke it. The many writes of a
#: running job (its claim, progress, the spend journal, heartbeats) never do.
NOTIFIER_STREAM = StreamSource(
    batch_size=10,
    bisect_batch_on_error=True,
    retry_attempts=5,
    max_record_age_seconds=24 * 3600,
    filters=(
        _new_status(*TERMINAL_STATUSES, JobStatus.AWAITING_APPROVAL),
        _new_status(JobStatus.RUNNING, source=["github"]),
    ),
)

#: The jobs table's stream → the expired-jobs function (REMOVE records only: TTL deletions),
#: which gives a removed queued or running job's slots back (issue 20).
#: The jobs dead-letter queue → the lost-jobs function, a few messages a batch (each two or
#: three table calls).
LOST_JOBS_BATCH_SIZE = 5

SLOTS_STREAM = StreamSource(
    batch_size=10,
    bisect_batch_on_error=True,
    retry_attempts=5,
    max_record_age_seconds=24 * 3600,
    filters=({"eventName": ["REMOVE"]},),
)

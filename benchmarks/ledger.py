"""The capacity ledger's arithmetic: recorded requests → capacity units, rates and cost.

Pure computation (no AWS, no clock), so a test can check it against hand-computed units.
DynamoDB's sizing rules (on-demand, as documented):
- write: 1 unit per KiB (rounded up, at least 1) of the larger of the old and the new item;
  a failed conditional write is charged the same; transactional writes twice. A KEYS_ONLY
  index entry is written (1 unit: keys + 100 bytes) only when the item's index key changes
  (a key change is a delete and a put); an ALL index copies every write at the item's size.
- read: 1 unit per 4 KiB (rounded up, at least 1) strongly consistent, half eventually
  consistent, twice transactional; the whole item is charged whatever the projection;
  BatchGetItem rounds per item, Query rounds the sum of what it read.
- a partition takes 1,000 write / 3,000 read units a second; the ledger keeps each at 50 %.
Two designs price the same records: `AFTER` (what the code does: small items, the sharded
KEYS_ONLY index, eventually consistent control reads) and `BEFORE`, a model of the previous
layout (see `Design`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks import aws_prices as price

KIB = 1024
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
INDEX_ENTRY_OVERHEAD_BYTES = 100
PARTITION_WRITE_UNITS = 1000
PARTITION_READ_UNITS = 3000
#: The ledger's headroom: no partition (or table quota) above this share of its limit.
HEADROOM = 0.5
#: Default on-demand throughput quota of a table (and of each of its indexes), per second.
TABLE_QUOTA_UNITS = 40_000
GB = 1024**3


@dataclass(frozen=True)
class DynamoWrite:
    """One item written (PutItem, UpdateItem, DeleteItem, or one item of a transaction)."""

    table: str
    key: str
    old_size: int  # bytes; 0 when there was no item
    new_size: int  # bytes; 0 when there is none after (deleted; failed conditional: = old)
    #: The item's index partition before / after ("<tenant>#<n>"), None when not indexed.
    old_index: str | None = None
    new_index: str | None = None
    index_entry_size: int = 0  # bytes of the KEYS_ONLY entry, overhead included
    tenant: str | None = None  # the job's tenant (None: not a job item)
    transactional: bool = False
    #: The table's other KEYS_ONLY indexes (approvals, unfinished jobs): (index, partition
    #: before, partition after, entry bytes) each, charged as the first index is.
    other_indexes: tuple[tuple[str, str | None, str | None, int], ...] = ()


@dataclass(frozen=True)
class DynamoRead:
    """GetItem (one size), BatchGetItem (one size per item) or Query (the sizes it read)."""

    action: str  # GetItem | BatchGetItem | Query
    table: str
    sizes: tuple[int, ...]  # full item sizes (index entries for an index Query)
    consistent: bool
    index: str | None = None
    partition: str | None = None  # the partition a Query read
    tenant: str | None = None
    transactional: bool = False


@dataclass(frozen=True)
class Request:
    """A request to another service: S3, SQS, EventBridge, Secrets Manager, API Gateway."""

    service: str
    action: str
    key: str = ""
    size: int = 0  # bytes sent or received


@dataclass(frozen=True)
class Invocation:
    function: str
    seconds: float
    memory_mb: int


Record = DynamoWrite | DynamoRead | Request | Invocation


def write_units(size: int, transactional: bool = False) -> int:
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return units * (2 if transactional else 1)


def read_units(size: int, consistent: bool, transactional: bool = False) -> float:
    units = float(max(1, math.ceil(size / READ_UNIT_BYTES)))
    if transactional:
        return units * 2
    return units if consistent else units / 2


@dataclass
class Units:
    """Capacity units by target ("<table>" or "<table>/<index>") and by partition."""

    write: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    read: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: (target, partition) → units; table partitions are job ids, index ones tenant shards.
    partition_write: dict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    partition_read: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    def add_write(self, target: str, partition: str, units: float) -> None:
        self.write[target] += units
        self.partition_write[target, partition] += units

    def add_read(self, target: str, partition: str, units: float) -> None:
        self.read[target] += units
        self.partition_read[target, partition] += units


@dataclass(frozen=True)
class Design:
    """How writes and reads of the jobs table are charged.

    `AFTER`: as recorded — the index is KEYS_ONLY, sharded `<tenant>#<n>` over `shards`
    partitions, written when its key changes. `BEFORE` (a model of the previous layout, priced on
    records of the same code run with every document inline, which is that layout's item):
    a `by_tenant` index with projection ALL keyed on the tenant alone — every write of a job item
    copied at its size into the tenant's one partition —, every GetItem strongly consistent
    (the old cancel poll read the whole item so), and a list page one Query of that index
    (the items it shows, summed) instead of the keys-only Query + BatchGetItem."""

    name: str
    index: str
    shards: int
    index_all: bool

    def charge(self, records: Iterable[Record]) -> Units:
        units = Units()
        for record in records:
            if isinstance(record, DynamoWrite):
                self._write(units, record)
            elif isinstance(record, DynamoRead):
                self._read(units, record)
        return units

    def _write(self, units: Units, w: DynamoWrite) -> None:
        size = max(w.old_size, w.new_size)
        units.add_write(w.table, w.key, write_units(size, w.transactional))
        target = f"{w.table}/{self.index}"
        if self.index_all:
            if w.tenant is not None:
                units.add_write(target, w.tenant, write_units(size))
            return
        changes = [(self.index, w.old_index, w.new_index, w.index_entry_size), *w.other_indexes]
        for index, old, new, entry in changes:
            if old == new:  # an index copy is written only when its key changes
                continue
            target = f"{w.table}/{index}"
            if old is not None:
                units.add_write(target, old, write_units(entry))
            if new is not None:
                units.add_write(target, new, write_units(entry))

    def _read(self, units: Units, r: DynamoRead) -> None:
        if r.action == "GetItem":
            consistent = True if self.index_all else r.consistent
            key = r.partition or r.table
            units.add_read(r.table, key, read_units(r.sizes[0], consistent, r.transactional))
        elif r.action == "BatchGetItem":
            if self.index_all:  # the old list page: one Query of the ALL index
                target = f"{r.table}/{self.index}"
                units.add_read(target, r.tenant or "", read_units(sum(r.sizes), False))
            else:
                for size in r.sizes:
                    units.add_read(r.table, r.partition or r.table, read_units(size, r.consistent))
        elif r.action == "Query" and not self.index_all:
            target = f"{r.table}/{r.index}" if r.index else r.table
            units.add_read(target, r.partition or "", read_units(sum(r.sizes), r.consistent))


def after_design(index: str, shards: int) -> Design:
    return Design("after", index, shards, index_all=False)


def before_design(index: str = "by_tenant") -> Design:
    return Design("before", index, 1, index_all=True)


@dataclass(frozen=True)
class Rates:
    """Jobs a second before a partition (or a table's quota) passes `HEADROOM` of its limit."""

    per_tenant: float
    overall: float
    tenant_bound: str  # what limits one tenant
    overall_bound: str


def rates(
    units: Units,
    jobs: int,
    table: str,
    index_target: str,
    shards: int,
    shared: Mapping[str, int] | None = None,
) -> Rates:
    """One tenant's jobs spread over its `shards` index partitions (n from a hash of the job
    id: on average evenly, which is what a sustained rate sees); table items are spread by job
    id, so the table is bound by its quota, not a partition. `shared`: indexes every tenant's
    jobs share (the unfinished-jobs index), by target, with their partition count: their
    partitions bound the overall rate."""
    per_job_w = units.write.get(index_target, 0.0) / jobs / shards
    per_job_r = units.read.get(index_target, 0.0) / jobs / shards
    tenant = _limit(
        {
            f"{index_target} partition writes": (PARTITION_WRITE_UNITS, per_job_w),
            f"{index_target} partition reads": (PARTITION_READ_UNITS, per_job_r),
        }
    )
    quota = {
        f"{target} {kind} quota": (TABLE_QUOTA_UNITS, used / jobs)
        for target in (table, index_target)
        for kind, used in (
            ("write", units.write.get(target, 0.0)),
            ("read", units.read.get(target, 0.0)),
        )
    }
    for target, partitions in (shared or {}).items():
        quota[f"{target} partition writes"] = (
            PARTITION_WRITE_UNITS,
            units.write.get(target, 0.0) / jobs / partitions,
        )
    overall = _limit(quota)
    return Rates(tenant[0], overall[0], tenant[1], overall[1])


def _limit(bounds: Mapping[str, tuple[float, float]]) -> tuple[float, str]:
    best = (math.inf, "none")
    for name, (limit, per_job) in bounds.items():
        if per_job > 0:
            rate = HEADROOM * limit / per_job
            if rate < best[0]:
                best = (rate, name)
    return best


@dataclass(frozen=True)
class Stated:
    """Inputs that the run does not measure."""

    #: How long a worker invocation bills per job beyond the measured overhead (the agent's run).
    agent_seconds: float
    #: Months a job item / a result object is kept (retention days / 30).
    item_months: float
    object_months: float
    log_bytes_per_invocation: int


def cost_per_thousand(
    records: Sequence[Record], units: Units, jobs: int, stated: Stated
) -> dict[str, float]:
    """USD per 1,000 jobs by line, model tokens excluded."""
    scale = 1000 / jobs
    wru = sum(units.write.values())
    rru = sum(units.read.values())
    lines: dict[str, float] = defaultdict(float)
    lines["DynamoDB writes"] = wru * price.DYNAMODB_PER_MILLION_WRU / 1e6
    lines["DynamoDB reads"] = rru * price.DYNAMODB_PER_MILLION_RRU / 1e6
    final_items: dict[str, int] = {}
    objects: dict[str, int] = {}
    lambda_gb_s = 0.0
    invocations = 0
    for r in records:
        if isinstance(r, DynamoWrite):
            final_items[f"{r.table}/{r.key}"] = r.new_size
        elif isinstance(r, Invocation):
            invocations += 1
            seconds = r.seconds + (stated.agent_seconds if r.function == "worker" else 0.0)
            lambda_gb_s += seconds * r.memory_mb / 1024
        elif isinstance(r, Request):
            chunks = max(1, math.ceil(r.size / price.BILLING_CHUNK_BYTES))
            if r.service == "s3":
                if r.action in {"PutObject", "CopyObject", "ListObjectsV2", "ListObjects"}:
                    lines["S3 requests"] += price.S3_PER_THOUSAND_PUT / 1000
                elif r.action in {"GetObject", "HeadObject"}:
                    lines["S3 requests"] += price.S3_PER_THOUSAND_GET / 1000
                if r.action == "PutObject":
                    objects[r.key] = r.size
                elif r.action == "DeleteObject":
                    objects.pop(r.key, None)
            elif r.service == "sqs":
                lines["SQS requests"] += chunks * price.SQS_PER_MILLION_REQUESTS / 1e6
            elif r.service == "events" and r.action == "PutEvents":
                lines["EventBridge events"] += chunks * price.EVENTBRIDGE_PER_MILLION_EVENTS / 1e6
            elif r.service == "apigateway":
                lines["API Gateway requests"] += price.API_GATEWAY_REST_PER_MILLION / 1e6
            elif r.service == "secretsmanager":
                lines["Secrets Manager"] += price.SECRETS_MANAGER_PER_10K_CALLS / 1e4
    item_gb = sum(final_items.values()) / GB
    lines["DynamoDB storage"] = item_gb * stated.item_months * price.DYNAMODB_PER_GB_MONTH
    lines["S3 storage"] = sum(objects.values()) / GB * stated.object_months * price.S3_PER_GB_MONTH
    lines["Lambda compute"] = lambda_gb_s * price.LAMBDA_ARM_PER_GB_SECOND
    lines["Lambda requests"] = invocations * price.LAMBDA_PER_MILLION_REQUESTS / 1e6
    log_gb = invocations * stated.log_bytes_per_invocation / GB
    lines["CloudWatch Logs"] = log_gb * price.CLOUDWATCH_LOGS_PER_GB_INGESTED
    return {name: value * scale for name, value in lines.items()}

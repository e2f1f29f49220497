"""The reconciler's run: what it reads as the table keeps finished jobs (its retention).

On an in-process emulator (moto, with the local stack's patches), tables of 0, `--rounds` x 500
and twice that many finished jobs (submitted, claimed and succeeded through the real repository)
beside `UNFINISHED` queued and running ones of four tenants. Each table is read twice,
interleaved:

- **index** (the code): `DynamoReconcileStore.snapshot()`, the keys of the sparse
  unfinished-jobs index, then those items by consistent `BatchGetItem`;
- **scan** (the previous code, its one call kept here as the baseline): a consistent `Scan`
  of the whole table with the same filter and projection.

Read units as DynamoDB bills them (`ledger.read_units`): a Scan bills the size of every item it
examines, per 1 MB page, whatever its filter keeps or its projection returns; a Query of a
keys-only index bills its entries (eventually consistent); a `BatchGetItem` bills each item's
full size rounded up to 4 KB. Item sizes are read back (unbilled) by DynamoDB's size rule.
The CPU of a run in process (client and emulator, `time.thread_time`, median of `REPEATS`) is
the local stack's share (it runs the reconciler every 5 s). The monthly cost is the one-minute
schedule's (`bench_approvals.sweeps_per_hour`) at the price table's read unit.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

DESCRIPTION = "the reconciler's run as finished jobs accumulate: index + BatchGet vs a scan"
UNFINISHED = 20
STEP = 500
REPEATS = 5
#: The previous snapshot's one call (a consistent scan, its filter and projection).
SCAN_ARGUMENTS: dict[str, Any] = {
    "FilterExpression": "begins_with(job_id, :usage) OR #s IN (:queued, :running, :awaiting)",
    "ProjectionExpression": "job_id, tenant_id, #s, created_at, lease_until, "
    "message_due, redrives, pending, running, drift, pending_approval",
    "ExpressionAttributeNames": {"#s": "status"},
    "ExpressionAttributeValues": {
        ":usage": {"S": "usage#"},
        ":queued": {"S": "queued"},
        ":running": {"S": "running"},
        ":awaiting": {"S": "awaiting_approval"},
    },
    "ConsistentRead": True,
}
PAGE_BYTES = 1024 * 1024


def _scan_units(client: Any, table: str, sizes: dict[str, int]) -> tuple[float, int]:
    """The previous snapshot's scan: (read units billed, items it returned)."""
    from benchmarks.ledger import read_units

    arguments: dict[str, Any] = {"TableName": table, **SCAN_ARGUMENTS}
    returned = 0
    while True:
        page = client.scan(**arguments)
        returned += len(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    # DynamoDB bills the items examined, 1 MB a page (moto pages by count, not size).
    units, page_bytes = 0.0, 0
    for size in sizes.values():
        if page_bytes + size > PAGE_BYTES:
            units += read_units(page_bytes, consistent=True)
            page_bytes = 0
        page_bytes += size
    return units + read_units(page_bytes, consistent=True), returned


class _Billed:
    """The read units of the reads a client makes (the index design's calls) while in the
    `with` block."""

    def __init__(self, client: Any, sizes: dict[str, int]) -> None:
        self.units = 0.0
        self._sizes = sizes
        self._events = client.meta.events

    def __enter__(self) -> _Billed:
        self._events.register("after-call.dynamodb", self._seen)
        return self

    def __exit__(self, *_: object) -> None:
        self._events.unregister("after-call.dynamodb", self._seen)

    def _seen(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        from benchmarks.ledger import INDEX_ENTRY_OVERHEAD_BYTES, read_units
        from claude_jobs.adapters.dynamo import item_size

        if model.name == "Query":  # keys-only entries, eventually consistent
            items = parsed.get("Items", [])
            entries = sum(item_size(i) + INDEX_ENTRY_OVERHEAD_BYTES for i in items)
            self.units += read_units(entries, consistent=False)
        elif model.name == "BatchGetItem":  # each item billed at its full size
            for items in parsed.get("Responses", {}).values():
                for item in items:
                    self.units += read_units(self._sizes[item["job_id"]["S"]], consistent=True)


def _cpu(run: Callable[[], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        began = time.thread_time()
        run()
        samples.append(time.thread_time() - began)
    return statistics.median(samples)


def run(args: argparse.Namespace) -> bool:
    from moto import mock_aws

    from benchmarks import aws_prices as price
    from benchmarks.bench_approvals import sweeps_per_hour
    from claude_jobs.adapters.dynamo import item_size
    from claude_jobs.adapters.reconcile_table import DynamoReconcileStore
    from claude_jobs.models import JobRequest, JobStatus
    from claude_jobs.ports import Transition
    from claude_jobs.wiring import Container
    from claude_jobs_tools.provision import provision

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    # The local stack's emulator patches (moto's transactions copy whole tables without them).
    from claude_jobs_tools.local import (
        dynamodb_expressions,
        dynamodb_queries,
        dynamodb_transactions,
    )

    for patch in (dynamodb_transactions, dynamodb_queries, dynamodb_expressions):
        patch.install()
    step = STEP * (args.rounds or 1)
    runs_a_month = sweeps_per_hour() * price.HOURS_PER_MONTH
    ok = True
    print(
        f"{UNFINISHED} unfinished jobs; a run's reads as finished jobs accumulate"
        f" (CPU: the in-process call, client and emulator, median of {REPEATS})"
    )
    print(
        f"  {'finished':>8} {'scan RRU':>9} {'index RRU':>10} {'scan CPU':>9} {'index CPU':>10}"
        f" {'CPU ratio':>9} {'same jobs':>9}"
    )
    rows = []
    with mock_aws(), contextlib.redirect_stdout(io.StringIO()) as quiet:
        settings = provision("bench-reconciler").settings
        container = Container(settings)
        jobs, service = container.job_repository, container.job_service
        client = container.client("dynamodb")
        table = settings.jobs_table
        for i in range(UNFINISHED):
            job = service.submit(f"tenant-{i % 4}", JobRequest(prompt=f"open {i}")).job
            if i % 2:
                jobs.transition(
                    Transition(
                        job_id=job.job_id, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40}
                    )
                )
        finished = 0
        for target in (0, step, 2 * step):
            while finished < target:
                job = service.submit(
                    f"tenant-{finished % 4}",
                    JobRequest(prompt=f"Summarise ticket OPS-{finished} and propose a fix."),
                ).job
                jobs.transition(
                    Transition(
                        job_id=job.job_id, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40}
                    )
                )
                jobs.transition(Transition(job_id=job.job_id, to=JobStatus.SUCCEEDED))
                finished += 1
            sizes: dict[str, int] = {}
            scan: dict[str, Any] = {"TableName": table}
            while True:
                page = client.scan(**scan)
                sizes.update({i["job_id"]["S"]: item_size(i) for i in page.get("Items", [])})
                if "LastEvaluatedKey" not in page:
                    break
                scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            store = DynamoReconcileStore(client, table)
            with _Billed(client, sizes) as billed:
                snapshot = store.snapshot()
            index_units = billed.units
            scan_units, returned = _scan_units(client, table, sizes)
            index_cpu = scan_cpu = 0.0
            for _ in range(2):  # interleaved
                index_cpu += _cpu(store.snapshot) / 2
                scan_cpu += _cpu(functools.partial(_scan_units, client, table, sizes)) / 2
            same = len(snapshot.jobs) + len(snapshot.slots) == returned
            ok = ok and same and len(snapshot.jobs) == UNFINISHED
            rows.append((finished, scan_units, index_units, scan_cpu, index_cpu, same))
    del quiet
    for finished, scan_units, index_units, scan_cpu, index_cpu, same in rows:
        print(
            f"  {finished:>8} {scan_units:9.1f} {index_units:10.1f} {scan_cpu * 1000:7.1f}ms"
            f" {index_cpu * 1000:8.1f}ms {scan_cpu / index_cpu:9.1f} {'yes' if same else 'NO':>9}"
        )
    (f0, s0, _, _, _, _), (f2, s2, i2, _, _, _) = rows[0], rows[-1]
    per_finished = (s2 - s0) / (f2 - f0)
    print(
        f"\nEach finished job kept adds {per_finished:.3f} read units to every scan; the index"
        f" design reads {i2:.1f} units a run whatever the table keeps."
    )
    for kept in (10_000, 300_000):
        before = (s0 + per_finished * kept) * runs_a_month * price.DYNAMODB_PER_MILLION_RRU / 1e6
        after = i2 * runs_a_month * price.DYNAMODB_PER_MILLION_RRU / 1e6
        print(
            f"  a table keeping {kept:>7,} finished jobs, {runs_a_month:,.0f} runs a month:"
            f" scan ${before:,.2f} a month, index ${after:,.4f} a month"
        )
    return ok

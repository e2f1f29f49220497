"""Capacity ledger: a mix of jobs through the real code path, priced with DynamoDB's rules.

Each job: submit (the submit function's handler on a real-shaped API Gateway event), the SQS
message received as the event source would, the worker's `JobProcessor` with a scripted agent
(it polls for cancel as a run of `AGENT_SECONDS` would), the notifier on the table's stream
records, one status GET and one list page — all against a moto server, every request recorded
with its sizes (`benchmarks/recorder.py`) and priced by `benchmarks/ledger.py`.

"Before" is the same code run with no document store (every document inline: the previous item
layout), priced by the ledger's model of the previous index and reads (`ledger.Design`).
Then: the status function's latency for a small inline result vs a 200 KiB text held in S3.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import aws_prices, ledger

DESCRIPTION = "capacity ledger: units, rates and cost per 1,000 jobs, before / after"
ROOT = Path(__file__).resolve().parents[1]
TENANT = "tenant-cap"
#: Stated: how long a job's agent runs (bills the worker, sets the number of cancel polls).
AGENT_SECONDS = 60.0
#: Stated: the API functions' memory (infra/components/functions.py default).
API_MEMORY_MB = 512
NOTIFIER_MEMORY_MB = 512
#: Stated: log bytes a function invocation ingests (structured INFO logs and EMF metrics).
LOG_BYTES_PER_INVOCATION = 2048
JOBS_PER_KIND = 3
LATENCY_RUNS = 31
TARGET_TENANT_RATE = 100.0
TARGET_OVERALL_RATE = 1000.0

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "tags"],
}
STRUCTURED = {"title": "t" * 200, "tags": [f"tag-{i:03d}" for i in range(100)]}


@dataclass(frozen=True)
class Kind:
    name: str
    body: dict[str, Any]
    text: str
    structured: Any = None


MIX = (
    Kind("small", {"prompt": "Say hello."}, "Hello."),
    Kind("100 KB prompt", {"prompt": "p" * 100_000}, "ok"),
    Kind("256 KiB result", {"prompt": "Write a long report."}, "r" * 256 * 1024),
    Kind(
        "structured",
        {"prompt": "Extract.", "output_schema": SCHEMA},
        json.dumps(STRUCTURED),
        STRUCTURED,
    ),
)
HEAVY = Kind(
    "heavy (all three)",
    {"prompt": "p" * 100_000, "output_schema": SCHEMA},
    "r" * 256 * 1024,
    STRUCTURED,
)


def load_handler(name: str) -> ModuleType:
    path = ROOT / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"_bench_capacity_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        )
    }
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


class Stack:
    """The functions of one deployment, on clients whose requests the recorder sees."""

    def __init__(self, prefix: str, inline: bool, worker_memory_mb: int) -> None:
        import boto3

        from benchmarks.recorder import Recorder
        from claude_jobs.notify.function import NotifierFunction
        from claude_jobs.resources import JOBS_TABLE, TABLES
        from claude_jobs.wiring import Container
        from claude_jobs_tools.local.table_stream import StreamReader, streams_client
        from claude_jobs_tools.provision import provision

        provisioned = provision(prefix)
        settings = provisioned.settings
        if inline:
            settings = settings.model_copy(update={"results_bucket": ""})
        self.settings = settings
        self.worker_memory_mb = worker_memory_mb
        probe = boto3.client("dynamodb")
        self.recorder = recorder = Recorder(probe, {t.name(prefix): t for t in TABLES})
        self.index = JOBS_TABLE.index("by_tenant_shard").name

        class RecordingContainer(Container):
            def client(self, service: str) -> Any:
                with self._lock:
                    if service not in self._clients:
                        self._clients[service] = recorder.attach(boto3.client(service))  # type: ignore[call-overload]
                    return self._clients[service]

        self.container = RecordingContainer(settings)
        self.submit = load_handler("submit")
        self.status = load_handler("status")
        self.submit.function.container = self.container
        self.status.function.container = self.container
        self.notifier = NotifierFunction(self.container)
        self.stream = StreamReader(probe, settings.jobs_table, streams=streams_client())
        #: The SQS event source's requests (receive, delete) are the account's too.
        self.source = recorder.attach(boto3.client("sqs"))
        self.sandbox = tempfile.mkdtemp(prefix="bench-capacity-")

    def api(self, method: str, path: str, body: Any = None, **query: str) -> dict[str, Any]:
        from benchmarks.ledger import Request
        from claude_jobs_tools.api_gateway_events import rest_event

        module = self.submit if method == "POST" else self.status
        event = rest_event(
            method,
            path,
            headers={"Content-Type": "application/json"},
            query=query or None,
            body=json.dumps(body) if body is not None else None,
            authorizer={"tenant_id": TENANT, "key_id": "bench"},
        )
        self.recorder.add(Request("apigateway", f"{method} {path}"))
        started = time.perf_counter()
        response: dict[str, Any] = module.lambda_handler(event, _context(module_name(method)))
        self.recorder.invocation(
            "status" if method == "GET" else "submit", time.perf_counter() - started, API_MEMORY_MB
        )
        assert response["statusCode"] < 300, response
        return response

    def run_job(self, kind: Kind) -> str:
        from claude_jobs.job_message import JobMessage
        from claude_jobs.worker.agent import AgentOutcome
        from claude_jobs.worker.isolation import AgentIdentity, IdentityPool
        from claude_jobs.worker.ports import WorkerPorts
        from claude_jobs.worker.processor import JobProcessor
        from claude_jobs_tools.scripted_agent import FakeProxy, PollThenAnswer, ScriptedRunner

        self.recorder.tag = kind.name
        job_id = str(json.loads(self.api("POST", "/v1/jobs", kind.body)["body"])["job_id"])
        queue = self.settings.jobs_queue_url
        (message,) = self.source.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
        answer: Callable[[Any], AgentOutcome] = lambda _r: AgentOutcome(  # noqa: E731
            "succeeded", text=kind.text, structured=kind.structured
        )
        polls = int(AGENT_SECONDS / self.settings.cancel_poll_seconds)
        ports = WorkerPorts(
            jobs=self.container.job_repository,
            documents=self.container.job_documents,
            runner=ScriptedRunner(PollThenAnswer(answer, polls=polls)),
            proxy=FakeProxy().start(),
            key=lambda: "sk-ant-bench",
            settings=self.settings,
            identities=IdentityPool(AgentIdentity()),
            sandbox_dir=self.sandbox,
            min_run_seconds=1,
        )
        processor = JobProcessor(ports)
        started = time.perf_counter()
        processed = processor.process_message(JobMessage.model_validate_json(message["Body"]), 900)
        self.recorder.invocation("worker", time.perf_counter() - started, self.worker_memory_mb)
        assert processed.action == "ran", processed
        self.source.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        for record in self.stream.poll():  # one invocation per record: no batching assumed
            started = time.perf_counter()
            self.notifier.handler({"Records": [record]}, _context("notifier"))
            self.recorder.invocation("notifier", time.perf_counter() - started, NOTIFIER_MEMORY_MB)
        self.api("GET", f"/v1/jobs/{job_id}")
        self.api("GET", "/v1/jobs", limit="20")
        return job_id


@dataclass(frozen=True)
class Row:
    kind: str
    table_w: float
    index_w: float
    table_r: float
    index_r: float
    rates: ledger.Rates
    cost: float


def price(stack: Stack, design: ledger.Design, kinds: list[str]) -> Row:
    records = [r for tag, r in stack.recorder.records if tag in kinds]
    jobs = JOBS_PER_KIND * len(kinds)
    units = design.charge(records)
    table = stack.settings.jobs_table
    index = f"{table}/{design.index}"
    stated = ledger.Stated(
        agent_seconds=AGENT_SECONDS,
        item_months=stack.settings.job_retention_days / 30,
        object_months=_results_days() / 30,
        log_bytes_per_invocation=LOG_BYTES_PER_INVOCATION,
    )
    cost = sum(ledger.cost_per_thousand(records, units, jobs, stated).values())
    return Row(
        " + ".join(kinds) if len(kinds) < 4 else "mix (equal parts)",
        units.write.get(table, 0) / jobs,
        units.write.get(index, 0) / jobs,
        units.read.get(table, 0) / jobs,
        units.read.get(index, 0) / jobs,
        ledger.rates(units, jobs, table, index, design.shards, _shared_indexes(table)),
        cost,
    )


def _shared_indexes(table: str) -> dict[str, int]:
    """The index every tenant's unfinished jobs share (the reconciler's), with its partitions."""
    from claude_jobs.resources import JOBS_TABLE, OPEN_SHARDS

    return {f"{table}/{JOBS_TABLE.index('by_open').name}": OPEN_SHARDS}


def _results_days() -> int:
    from claude_jobs.resources import RESULTS_EXPIRY_DAYS

    return RESULTS_EXPIRY_DAYS


def table_text(title: str, rows: list[Row]) -> str:
    head = (
        f"{'job kind':<20} {'WCU tbl':>8} {'WCU idx':>8} {'RCU tbl':>8} {'RCU idx':>8} "
        f"{'jobs/s/tenant':>13} {'jobs/s overall':>14} {'$/1k jobs':>9}  tenant bound by"
    )
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.kind:<20} {r.table_w:>8.1f} {r.index_w:>8.1f} {r.table_r:>8.1f} {r.index_r:>8.1f} "
            f"{r.rates.per_tenant:>13,.0f} {r.rates.overall:>14,.0f} {r.cost:>9.3f}  "
            f"{r.rates.tenant_bound.split('/')[-1]}"
        )
    return "\n".join(lines)


def status_latency(stack: Stack) -> tuple[float, float]:
    """p50 seconds of the status function's GET: a small inline result vs a 200 KiB text."""
    small_kind = Kind("latency small", {"prompt": "hi"}, "Hello.")
    big_kind = Kind("latency 200 KiB", {"prompt": "hi"}, "x" * 200 * 1024)
    small, big = stack.run_job(small_kind), stack.run_job(big_kind)
    times: dict[str, list[float]] = {small: [], big: []}
    for _ in range(LATENCY_RUNS):
        for job_id in (small, big):
            started = time.perf_counter()
            stack.api("GET", f"/v1/jobs/{job_id}")
            times[job_id].append(time.perf_counter() - started)
    return statistics.median(times[small]), statistics.median(times[big])


def module_name(method: str) -> str:
    return "status" if method == "GET" else "submit"


def _context(function: str) -> Any:
    """A Lambda context as the runtime passes it (the handlers' Powertools decorators read it)."""
    from claude_jobs.definitions import FUNCTIONS
    from claude_jobs_tools.local.runtime import LambdaContext

    spec = FUNCTIONS[function]
    return LambdaContext(spec.name, spec.memory_mb, spec.timeout_seconds)


def run(args: argparse.Namespace) -> bool:
    from claude_jobs.resources import TENANT_SHARDS
    from infra.config import InfraConfig

    config = InfraConfig()
    kinds = [k.name for k in MIX]
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    with moto_server(), contextlib.redirect_stdout(io.StringIO()):  # the functions' EMF lines
        stacks = {}
        for name, inline in (("before", True), ("after", False)):
            stack = Stack(f"cap-{name}", inline, config.worker_memory_mb)
            for kind in (*MIX, HEAVY):
                for _ in range(JOBS_PER_KIND):
                    stack.run_job(kind)
            stacks[name] = stack
        designs = {
            "before": ledger.before_design(),
            "after": ledger.after_design(stacks["after"].index, TENANT_SHARDS),
        }
        out: dict[str, list[Row]] = {}
        for name, stack in stacks.items():
            groups = [[k] for k in kinds] + [kinds, [HEAVY.name]]
            out[name] = [price(stack, designs[name], g) for g in groups]
        inline_p50, s3_p50 = status_latency(stacks["after"])
    print(
        f"{JOBS_PER_KIND} jobs per kind; agent run stated {AGENT_SECONDS:.0f} s "
        f"(cancel poll every {stacks['after'].settings.cancel_poll_seconds:g} s); "
        f"rates keep every partition and table quota at {ledger.HEADROOM:.0%}; "
        f"prices: {aws_prices.SOURCE}"
    )
    print()
    print(
        table_text(
            "BEFORE (model: documents inline, by_tenant index ALL, one partition a tenant)",
            out["before"],
        )
    )
    print()
    print(
        table_text(
            f"AFTER (measured: small items, KEYS_ONLY index over {TENANT_SHARDS} shards)",
            out["after"],
        )
    )
    heavy = out["after"][-1]
    old_heavy = out["before"][-1]
    print()
    print(
        f"heavy job before: {old_heavy.table_w + old_heavy.index_w:.0f} WCU over its life, "
        f"{old_heavy.rates.per_tenant:.1f} jobs/s per tenant "
        "(issue's estimate: ~1,000+ WCU, ~1/s)"
    )
    tenant_ok = heavy.rates.per_tenant >= TARGET_TENANT_RATE
    overall_ok = heavy.rates.overall >= TARGET_OVERALL_RATE
    print(
        f"target one tenant ≥ {TARGET_TENANT_RATE:.0f} heavy jobs/s: "
        f"{heavy.rates.per_tenant:,.0f} ({'met' if tenant_ok else 'MISSED'}; "
        f"bound: {heavy.rates.tenant_bound})"
    )
    print(
        f"target ≥ {TARGET_OVERALL_RATE:,.0f} heavy jobs/s overall: "
        f"{heavy.rates.overall:,.0f} ({'met' if overall_ok else 'MISSED'}; "
        f"bound: {heavy.rates.overall_bound})"
    )
    if not overall_ok:
        need = TARGET_OVERALL_RATE / heavy.rates.overall * ledger.TABLE_QUOTA_UNITS
        print(
            f"  → an account quota, not the design: raise the table's on-demand quota from "
            f"{ledger.TABLE_QUOTA_UNITS:,} to ≥ {need:,.0f} units/s (Service Quotas)"
        )
    print()
    print(
        f"status GET p50 over {LATENCY_RUNS} runs (moto server): inline small result "
        f"{inline_p50 * 1000:.1f} ms, 200 KiB text from S3 {s3_p50 * 1000:.1f} ms "
        f"(+{(s3_p50 - inline_p50) * 1000:.1f} ms)"
    )
    # The overall rate is bound by account quotas (printed above); the design target is per tenant.
    return tenant_ok


if __name__ == "__main__":
    import sys

    sys.exit(0 if run(argparse.Namespace(rounds=None)) else 1)

"""The reconciler (docs/adr/0001-runtime-api.md) on the emulator, behind the fault front.

Slots: a tenant's pending/running counters that drifted from its non-terminal jobs (an item
removed behind the repository's back, a counter written wrong) are repaired, even when the
reconciler's own AWS calls fail at random (each failed run is only retried by the next one),
and a counter that a transition moves between two runs is never overwritten with a stale
count. Re-drives: only the jobs whose message is overdue get one; a deferred job's message is
due later, a running job under a live lease is left alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from claude_jobs.adapters.reconcile_table import DynamoReconcileStore, SqsJobWaker, expect_message
from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.ports import Transition
from claude_jobs.reconcile.reconciler import Outcome, Reconciler
from claude_jobs.wiring import Container
from claude_jobs_tools.local.aws_faults import AwsFaultProxy, FaultPlan


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, AwsFaultProxy]]:
    """The emulator behind the fault front (faults off until a test turns them on)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    faults = AwsFaultProxy(
        f"http://{host}:{port}",
        FaultPlan(rate=0.3, seed=11, services=frozenset({"dynamodb", "sqs"})),
    ).start()
    for name, value in {
        "AWS_ENDPOINT_URL": faults.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ClaudeJobs")
    try:
        yield f"http://{host}:{port}", faults
    finally:
        faults.close()
        server.stop()


def _stack() -> tuple[Container, Reconciler]:
    from claude_jobs_tools.provision import provision

    settings = provision(f"rec{uuid.uuid4().hex[:8]}", secret_value="unused").settings
    container = Container(settings)
    reconciler = Reconciler(
        DynamoReconcileStore(container.client("dynamodb"), settings.jobs_table),
        SqsJobWaker(container.client("sqs"), settings.jobs_queue_url),
        clock=time.time,
        grace_seconds=60,
    )
    return container, reconciler


def _run_until(reconciler: Reconciler, done: Any, tries: int = 40) -> list[Outcome]:
    """Runs as the schedule would: a run that a fault ends is followed by the next one."""
    outcomes = []
    for _ in range(tries):
        try:
            outcomes.append(reconciler.run())
        except Exception as exc:  # the schedule runs it again a minute later
            print("a reconciler run failed:", type(exc).__name__)
            continue
        if done():
            break
    return outcomes


def test_drifted_slot_counters_are_repaired_through_aws_faults(
    aws: tuple[str, AwsFaultProxy],
) -> None:
    emulator_url, faults = aws
    container, reconciler = _stack()
    jobs = container.job_repository
    service = container.job_service
    # Given tenant A with three jobs, one of them running, and tenant B with one
    a_jobs = [service.submit("tenant-a", JobRequest(prompt=f"a{i}")).job for i in range(3)]
    b_job = service.submit("tenant-b", JobRequest(prompt="b")).job
    jobs.transition(
        Transition(job_id=a_jobs[0].job_id, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40})
    )
    # And drift: one of A's queued items vanished behind the repository's back (its slot
    # stayed taken), and B's counter says it runs two jobs
    direct = boto3.client("dynamodb", endpoint_url=emulator_url, region_name="us-east-1")
    table = container.settings.jobs_table
    direct.delete_item(TableName=table, Key={"job_id": {"S": a_jobs[2].job_id}})
    direct.update_item(
        TableName=table,
        Key={"job_id": {"S": "usage#tenant-b"}},
        UpdateExpression="SET running = :two",
        ExpressionAttributeValues={":two": {"N": "2"}},
    )
    assert (jobs.tenant_usage("tenant-a").pending, jobs.tenant_usage("tenant-b").running) == (3, 2)

    def repaired() -> bool:
        a, b = jobs.tenant_usage("tenant-a"), jobs.tenant_usage("tenant-b")
        return (a.pending, a.running, b.pending, b.running) == (2, 1, 1, 0)

    # When the reconciler runs on its schedule while a third of its AWS calls fail
    faults.enabled = True
    outcomes = _run_until(reconciler, repaired)
    faults.enabled = False
    # Then faults did hit it, and the counters are the jobs' counts again
    assert sum(faults.stats()["injected"].values()) > 0
    assert repaired(), [jobs.tenant_usage(t) for t in ("tenant-a", "tenant-b")]
    assert {"tenant-a", "tenant-b"} <= {t for o in outcomes for t in o.repaired}
    # And fair sharing counts from them: the next job of B is admitted, and ends to zero
    jobs.transition(
        Transition(job_id=b_job.job_id, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40})
    )
    jobs.transition(Transition(job_id=b_job.job_id, to=JobStatus.SUCCEEDED))
    usage = jobs.tenant_usage("tenant-b")
    assert (usage.pending, usage.running) == (0, 0)


def test_a_counter_moved_between_runs_is_not_overwritten_with_a_stale_count(
    aws: tuple[str, AwsFaultProxy],
) -> None:
    container, reconciler = _stack()
    jobs = container.job_repository
    # Given a tenant whose counter drifted (one slot too many) and a first run that saw it
    job = container.job_service.submit("tenant-c", JobRequest(prompt="c")).job
    direct = container.client("dynamodb")
    direct.update_item(
        TableName=container.settings.jobs_table,
        Key={"job_id": {"S": "usage#tenant-c"}},
        UpdateExpression="ADD pending :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    first = reconciler.run()
    assert first.drifting == ["tenant-c"] and first.repaired == []
    # When a real transition moves the counter before the next run
    jobs.transition(Transition(job_id=job.job_id, to=JobStatus.CANCELLED))
    second = reconciler.run()
    # Then that run repairs nothing on the old observation; it only notes the new drift
    assert second.repaired == [] and second.drifting == ["tenant-c"]
    assert jobs.tenant_usage("tenant-c").pending == 1
    # And the run after repairs it to the truth: no job is pending
    third = reconciler.run()
    assert third.repaired == ["tenant-c"]
    assert jobs.tenant_usage("tenant-c").pending == 0


def _messages(container: Container) -> list[str]:
    import json

    sqs = container.client("sqs")
    found: list[str] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=container.settings.jobs_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return found
        for message in got:
            found.append(json.loads(message["Body"])["job_id"])
            sqs.delete_message(
                QueueUrl=container.settings.jobs_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


def test_only_overdue_jobs_are_re_driven_and_with_a_back_off(
    aws: tuple[str, AwsFaultProxy],
) -> None:
    container, _ = _stack()
    jobs = container.job_repository
    service = container.job_service
    # Given four jobs whose messages the queue no longer holds: one queued and overdue, one
    # deferred (its message due in 10 minutes), one running under a live lease, one running
    # whose lease ended long ago
    lost, deferred, leased, abandoned = (
        service.submit("tenant-d", JobRequest(prompt=f"d{i}")).job for i in range(4)
    )
    _messages(container)
    settings = container.settings
    now = time.time()
    expect_message(container.client("dynamodb"), settings.jobs_table, deferred.job_id, now + 600)
    jobs.transition(
        Transition(
            job_id=leased.job_id, to=JobStatus.RUNNING, set_fields={"lease_until": int(now) + 600}
        )
    )
    jobs.transition(
        Transition(
            job_id=abandoned.job_id,
            to=JobStatus.RUNNING,
            set_fields={"lease_until": int(now) - 600},
        )
    )
    later = Reconciler(
        DynamoReconcileStore(container.client("dynamodb"), settings.jobs_table),
        SqsJobWaker(container.client("sqs"), settings.jobs_queue_url),
        clock=lambda: now + 120,
        grace_seconds=60,
    )
    # When the reconciler runs
    outcome = later.run()
    # Then the lost and the abandoned jobs get a message, and no other
    assert sorted(outcome.redriven) == sorted([lost.job_id, abandoned.job_id])
    assert sorted(_messages(container)) == sorted([lost.job_id, abandoned.job_id])
    # And a run right after sends nothing more (the re-driven message is due later)
    assert later.run().redriven == [] and _messages(container) == []


# ---------------------------------------------------------------- approvals


def _waiting(container: Container, tenant: str, approval_id: str, expires_in: float) -> str:
    """A job whose call waits for a person, written as the worker writes it (running →
    awaiting_approval: pending approval set, lease cleared; no message left)."""
    from datetime import timedelta

    from tests.support.approvals import make_wait

    jobs = container.job_repository
    request = JobRequest.model_validate(
        {"prompt": "p" * 90_000, "allowed_tools": ["Bash"], "approvals": ["Bash(git push:*)"]}
    )
    job = container.job_service.submit(tenant, request).job
    make_wait(
        jobs,
        job.job_id,
        approval_id=approval_id,
        waited=timedelta(0),
        expires_in=timedelta(seconds=expires_in),
    )
    return job.job_id


def _sweeper(container: Container, at: float) -> Reconciler:

    from claude_jobs.reconcile.expiry import ApprovalExpiry

    settings = container.settings
    return Reconciler(
        DynamoReconcileStore(container.client("dynamodb"), settings.jobs_table),
        SqsJobWaker(container.client("sqs"), settings.jobs_queue_url),
        clock=lambda: at,
        grace_seconds=60,
        expirer=ApprovalExpiry(
            container.job_repository,
            container.job_documents,
            clock=lambda: datetime.fromtimestamp(at, UTC),
        ),
    )


def test_a_due_approval_is_swept_to_failed_and_a_waiting_job_is_never_re_driven(
    aws: tuple[str, AwsFaultProxy],
) -> None:
    from claude_jobs.approval_models import APPROVAL_EXPIRED

    container, _ = _stack()
    jobs = container.job_repository
    # Given two waiting jobs of one tenant (one due in 10 s, one in a day) and a running one
    due = _waiting(container, "tenant-w", "apr_due", 10)
    later = _waiting(container, "tenant-w", "apr_later", 86_400)
    running = container.job_service.submit("tenant-w", JobRequest(prompt="r")).job
    jobs.transition(
        Transition(job_id=running.job_id, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40})
    )
    _messages(container)
    usage = jobs.tenant_usage("tenant-w")
    assert (usage.pending, usage.running) == (3, 1)
    documents = container.job_documents
    stored_prompts = dict(jobs.get(due).documents)  # type: ignore[union-attr]
    assert stored_prompts
    # When the sweep runs now: nothing is due, nothing is re-driven, the counters agree
    now = time.time()
    first = _sweeper(container, now + 1).run()
    second = _sweeper(container, now + 2).run()
    assert first.expired == second.expired == [] and first.redriven == second.redriven == []
    assert first.drifting == second.drifting == [] and second.repaired == []
    assert _messages(container) == []
    # And when it runs two hours later (long past any grace for a message)
    outcome = _sweeper(container, now + 7200).run()
    # Then the due one expired — only it — and no waiting job got a message
    assert outcome.expired == [due] and outcome.redriven == [] and _messages(container) == []
    failed = jobs.get(due)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == APPROVAL_EXPIRED
    assert failed.pending_approval is None and failed.prompt is None and failed.finished_at
    assert failed.documents == {}
    # And its stored prompt is deleted from the documents store
    with pytest.raises(Exception, match="NoSuchKey"):
        documents._store.get(next(iter(stored_prompts.values())))  # type: ignore[union-attr]
    assert jobs.get(later).status is JobStatus.AWAITING_APPROVAL  # type: ignore[union-attr]
    # And the tenant's counters: two pending (one waiting), one running — and they stay
    usage = jobs.tenant_usage("tenant-w")
    assert (usage.pending, usage.running) == (2, 1)
    after = _sweeper(container, now + 7201).run()
    assert after.drifting == [] and after.repaired == [] and after.expired == []


def test_a_decision_racing_the_sweep_wins(aws: tuple[str, AwsFaultProxy]) -> None:
    from claude_jobs.reconcile.expiry import ApprovalExpiry

    container, _ = _stack()
    jobs = container.job_repository
    job_id = _waiting(container, "tenant-x", "apr_1", 10)
    at = time.time() + 60

    class Deciding:
        """The repository, with a decision landing between the sweep's read and write."""

        def __init__(self) -> None:
            self.get = self._get

        def _get(self, job_id: str) -> Any:
            read = jobs.get(job_id)
            jobs.transition(
                Transition(
                    job_id=job_id,
                    to=JobStatus.QUEUED,
                    from_=[JobStatus.AWAITING_APPROVAL],
                    set_fields={"pending_approval": None},
                )
            )
            return read

        def transition(self, change: Transition) -> Any:
            return jobs.transition(change)

    from datetime import UTC, datetime

    expiry = ApprovalExpiry(
        Deciding(),  # type: ignore[arg-type]
        container.job_documents,
        clock=lambda: datetime.fromtimestamp(at, UTC),
    )
    # When the sweep reads the due job and the decision's write lands before the sweep's
    assert expiry.expire(job_id, "apr_1") is None
    # Then the job is queued (the decision stands) and still counts as pending
    stored = jobs.get(job_id)
    assert stored is not None and stored.status is JobStatus.QUEUED and stored.error is None
    assert stored.prompt is not None or stored.documents
    assert jobs.tenant_usage("tenant-x").pending == 1


def test_the_scheduled_function_expires_a_due_approval(aws: tuple[str, AwsFaultProxy]) -> None:
    from claude_jobs.approval_models import APPROVAL_EXPIRED
    from claude_jobs.reconcile.function import ReconcilerFunction
    from tests.lambda_context import lambda_context

    container, _ = _stack()
    # Given a job whose approval expired a few seconds ago
    job_id = _waiting(container, "tenant-f", "apr_1", -5)
    # When the schedule invokes the reconciler function
    function = ReconcilerFunction(Container(container.settings))
    answer = function.handler(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
        lambda_context("reconciler"),
    )
    # Then it reports the job expired, and the job is failed / approval_expired
    assert answer["expired"] == [job_id] and answer["redriven"] == []
    job = container.job_repository.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == APPROVAL_EXPIRED


class _ItemsRead:
    """Every item a DynamoDB client's reads touch: what a Scan or Query examined (its
    `ScannedCount`, which DynamoDB bills, filter or not) and the keys a read returned."""

    def __init__(self, client: Any) -> None:
        self.examined = 0
        self.keys: set[str] = set()
        client.meta.events.register("after-call.dynamodb", self._seen)

    def _seen(self, parsed: dict[str, Any], **_: Any) -> None:
        items: list[dict[str, Any]] = list(parsed.get("Items", []))
        self.examined += int(parsed.get("ScannedCount", 0))
        for returned in parsed.get("Responses", {}).values():
            items.extend(returned)
            self.examined += len(returned)
        self.keys.update(item["job_id"]["S"] for item in items if "job_id" in item)


def test_a_run_reads_the_unfinished_jobs_and_counters_only(aws: tuple[str, AwsFaultProxy]) -> None:
    container, _ = _stack()
    jobs, service = container.job_repository, container.job_service
    # Given a table that keeps 24 finished jobs (succeeded, failed, timed out, cancelled
    # queued, failed before dispatch), next to one queued, one running and one waiting job
    finished = []
    for i in range(24):
        job = service.submit(f"tenant-{i % 2}", JobRequest(prompt=f"done {i}")).job
        finished.append(job.job_id)
        if i % 6 == 0:
            jobs.transition(Transition(job_id=job.job_id, to=JobStatus.CANCELLED))
            continue
        if i % 6 == 1:
            jobs.fail_dispatch(job.job_id, None, "no queue", datetime.now(UTC))
            continue
        jobs.transition(
            Transition(job_id=job.job_id, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40})
        )
        end = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED)
        jobs.transition(Transition(job_id=job.job_id, to=end[i % 4]))
    queued = service.submit("tenant-0", JobRequest(prompt="queued")).job.job_id
    running = service.submit("tenant-1", JobRequest(prompt="running")).job.job_id
    jobs.transition(
        Transition(job_id=running, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40})
    )
    waiting = _waiting(container, "tenant-1", "apr_open", 86_400)
    store = DynamoReconcileStore(container.client("dynamodb"), container.settings.jobs_table)
    reads = _ItemsRead(store._client)
    # When the reconciler takes its snapshot
    snapshot = store.snapshot()
    # Then it holds the three unfinished jobs and both tenants' counters, as they are
    assert {(j.job_id, j.status) for j in snapshot.jobs} == {
        (queued, "queued"),
        (running, "running"),
        (waiting, "awaiting_approval"),
    }
    counters = {t: (s.pending, s.running) for t, s in snapshot.slots.items()}
    assert counters == {"tenant-0": (1, 0), "tenant-1": (2, 1)}
    # And no finished job was read, or examined: each unfinished item once in the index and
    # once by key (a scan examined all 29 items, and billed them, whatever its filter kept)
    assert not reads.keys & set(finished)
    assert reads.keys == {queued, running, waiting, "usage#tenant-0", "usage#tenant-1"}
    assert reads.examined == 2 * 5


class _RawTable:
    """The jobs table read and written as it is, past the repository."""

    def __init__(self, emulator_url: str, table: str) -> None:
        self.client = boto3.client("dynamodb", endpoint_url=emulator_url, region_name="us-east-1")
        self.table = table

    def shard(self, key: str) -> str | None:
        """The item's unfinished-jobs index key, if it has one."""
        from claude_jobs.adapters.job_items import OPEN_SHARD

        item = self.client.get_item(
            TableName=self.table, Key={"job_id": {"S": key}}, ConsistentRead=True
        )
        return item["Item"].get(OPEN_SHARD, {}).get("S")

    def drop_shard(self, key: str) -> None:
        """Make the item one written before the index existed."""
        from claude_jobs.adapters.job_items import OPEN_SHARD

        self.client.update_item(
            TableName=self.table,
            Key={"job_id": {"S": key}},
            UpdateExpression=f"REMOVE {OPEN_SHARD}",
        )


def test_every_write_keeps_a_job_in_the_open_index_exactly_while_it_is_unfinished(
    aws: tuple[str, AwsFaultProxy],
) -> None:
    from claude_jobs.adapters.job_items import open_shard

    emulator_url, _ = aws
    container, _ = _stack()
    jobs, service = container.job_repository, container.job_service
    raw = _RawTable(emulator_url, container.settings.jobs_table)
    shard = raw.shard
    # A job through its life: queued, running, awaiting approval, queued again, running, done
    job_id = _waiting(container, "tenant-x", "apr_x", 86_400)
    assert shard(job_id) == open_shard(job_id)
    jobs.transition(
        Transition(job_id=job_id, to=JobStatus.QUEUED, set_fields={"pending_approval": None})
    )
    assert shard(job_id) == open_shard(job_id)
    # (a job written before the index existed joins it at its next transition)
    raw.drop_shard(job_id)
    jobs.transition(
        Transition(job_id=job_id, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40})
    )
    assert shard(job_id) == open_shard(job_id)
    jobs.transition(Transition(job_id=job_id, to=JobStatus.SUCCEEDED))
    assert shard(job_id) is None
    # A queued job cancelled, and one failed before dispatch, leave it too
    cancelled = service.submit("tenant-x", JobRequest(prompt="c")).job.job_id
    jobs.transition(Transition(job_id=cancelled, to=JobStatus.CANCELLED))
    undispatched = service.submit("tenant-x", JobRequest(prompt="d")).job.job_id
    jobs.fail_dispatch(undispatched, None, "no queue", datetime.now(UTC))
    assert shard(cancelled) is None and shard(undispatched) is None
    # And the tenant's counter is in it, in its own shard
    assert shard("usage#tenant-x") == open_shard("usage#tenant-x")


def test_the_migration_gives_the_key_to_unfinished_items_written_before_the_index(
    aws: tuple[str, AwsFaultProxy],
) -> None:
    from typer.testing import CliRunner

    from claude_jobs.adapters.job_items import open_shard
    from claude_jobs.adapters.reconcile_table import backfill_open_keys
    from claude_jobs_tools.cli.main import app

    emulator_url, _ = aws
    container, _ = _stack()
    jobs, service = container.job_repository, container.job_service
    table = container.settings.jobs_table
    raw = _RawTable(emulator_url, table)
    direct, shard = raw.client, raw.shard
    # Given a table as the version before the index left it: a queued, a running and a waiting
    # job, a finished one, and the tenant's counter, none with the index's key
    queued = service.submit("tenant-m", JobRequest(prompt="q")).job.job_id
    running = service.submit("tenant-m", JobRequest(prompt="r")).job.job_id
    jobs.transition(
        Transition(job_id=running, to=JobStatus.RUNNING, set_fields={"lease_until": 2**40})
    )
    waiting = _waiting(container, "tenant-m", "apr_m", 86_400)
    finished = service.submit("tenant-m", JobRequest(prompt="f")).job.job_id
    jobs.transition(Transition(job_id=finished, to=JobStatus.CANCELLED))
    unfinished = {queued, running, waiting, "usage#tenant-m"}
    for key in unfinished:
        raw.drop_shard(key)
    store = DynamoReconcileStore(container.client("dynamodb"), table)
    assert store.snapshot().jobs == [] and store.snapshot().slots == {}
    # When the migration runs (the command, against the same table)
    env = {"JOBS_TABLE": table, "AWS_ENDPOINT_URL": emulator_url}
    result = CliRunner().invoke(app, ["migrate", "open-index"], env=env)
    assert result.exit_code == 0, result.output
    assert "4 given the key" in result.output
    # Then each unfinished item has its key, the finished job none, and the reconciler sees
    # them all again
    assert {key: shard(key) for key in unfinished} == {key: open_shard(key) for key in unfinished}
    assert shard(finished) is None
    snapshot = store.snapshot()
    assert {j.job_id for j in snapshot.jobs} == {queued, running, waiting}
    assert set(snapshot.slots) == {"tenant-m"}
    # And a second run gives nothing more
    again = backfill_open_keys(direct, table)
    assert (again.given, again.skipped) == (0, 0)
    # And a job that ends between the migration's scan and its write is left without the key
    late = service.submit("tenant-m", JobRequest(prompt="late")).job.job_id
    raw.drop_shard(late)

    def end_it_first(**_: Any) -> None:
        current = jobs.get(late)
        if current is not None and current.status is JobStatus.QUEUED:
            jobs.transition(Transition(job_id=late, to=JobStatus.CANCELLED))

    direct.meta.events.register("before-call.dynamodb.UpdateItem", end_it_first)
    raced = backfill_open_keys(direct, table)
    assert (raced.given, raced.skipped) == (0, 1)
    assert shard(late) is None

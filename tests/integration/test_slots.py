"""Slots always come back (issue 20): a job whose message dead-letters ends `failed`
(`worker_lost`) and frees its tenant's pending and running slots; a queued or running job whose
item is removed (TTL) frees them too. Each exactly once, also when AWS calls fail on the way
(the fault front in front of the emulator: throttled, failed, or applied-then-failed calls).

Jobs are submitted through the job service and dead-lettered by the queue's own redrive policy
(moto applies it); removals reach the function as the table's real stream records."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config

from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.ports import TenantUsage, Transition
from claude_jobs.resources import JOBS_DLQ, JOBS_QUEUE
from claude_jobs.slots.function import ExpiredJobsFunction, LostJobsFunction
from claude_jobs.slots.service import WORKER_LOST
from claude_jobs.wiring import Container
from claude_jobs_tools.local.aws_faults import AwsFaultProxy, FaultPlan
from claude_jobs_tools.local.emulator import Emulator
from claude_jobs_tools.local.table_stream import StreamReader
from claude_jobs_tools.local.workers import failed_ids, sqs_record
from claude_jobs_tools.provision import Provisioned, provision
from tests.lambda_context import lambda_context

TENANT = "acme"
#: The jobs queue as a test needs it: a message comes back at once, and is dead-lettered on
#: its second receive.
FAST_REDRIVE = {"VisibilityTimeout": "0"}


def _redrive(provisioned: Provisioned, max_receives: int = 1) -> None:
    sqs = boto3.client("sqs")
    sqs.set_queue_attributes(
        QueueUrl=provisioned.queue_urls[JOBS_QUEUE.logical_id],
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps(
                {
                    "deadLetterTargetArn": provisioned.queue_arns[JOBS_DLQ.logical_id],
                    "maxReceiveCount": max_receives,
                }
            ),
        },
    )


def submit(container: Container, prompt: str = "hello") -> str:
    return container.job_service.submit(TENANT, JobRequest(prompt=prompt)).job.job_id


def claim(container: Container, job_id: str, lease_seconds: float) -> None:
    """A worker's claim: queued → running, with a lease until now + `lease_seconds`."""
    now = datetime.now(UTC)
    container.job_repository.transition(
        Transition(
            job_id=job_id,
            from_=[JobStatus.QUEUED],
            to=JobStatus.RUNNING,
            set_fields={"started_at": now, "lease_until": int(now.timestamp() + lease_seconds)},
            add_attempts=1,
        )
    )


def dead_letter_all(provisioned: Provisioned) -> list[dict[str, Any]]:
    """Receive the jobs queue's messages until the redrive policy has moved them all to the
    dead-letter queue; return the dead-letter queue's messages as Lambda SQS records."""
    sqs = boto3.client("sqs")
    queue = provisioned.queue_urls[JOBS_QUEUE.logical_id]
    for _ in range(10):
        if not sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            break
    dlq, arn = (
        provisioned.queue_urls[JOBS_DLQ.logical_id],
        provisioned.queue_arns[JOBS_DLQ.logical_id],
    )
    messages = sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])
    return [sqs_record(dict(m), arn) for m in messages]


def usage(container: Container) -> TenantUsage:
    return container.job_repository.tenant_usage(TENANT)


def _identifier(record: dict[str, Any]) -> str:
    """How a partial batch response names a record: an SQS message's id, a stream record's
    sequence number."""
    return str(record.get("messageId") or record["dynamodb"]["SequenceNumber"])


def deliver(function: Any, records: list[dict[str, Any]], name: str) -> set[str]:
    """One invocation; the ids of the records it reported failed."""
    answer = function.handler({"Records": records}, lambda_context(name))
    ids = {_identifier(r) for r in records}
    failed = failed_ids(answer, ids)
    assert failed is not None
    return failed


# ---------------------------------------------------------------- in moto (in process)


@pytest.fixture
def stack(aws: None) -> Provisioned:
    provisioned = provision("test", secret_value="sk-ant-test-not-a-real-key")
    _redrive(provisioned)
    return provisioned


@pytest.fixture
def container(stack: Provisioned) -> Container:
    return Container(stack.settings)


def test_a_dead_lettered_job_ends_worker_lost_and_frees_its_slots(
    stack: Provisioned, container: Container
) -> None:
    # Given two jobs of a tenant, one queued and one running under a lapsed lease, whose
    # messages the queue dead-lettered
    queued, running = submit(container), submit(container)
    claim(container, running, lease_seconds=-60)
    assert usage(container) == TenantUsage(pending=2, running=1)
    records = dead_letter_all(stack)
    assert {json.loads(r["body"])["job_id"] for r in records} == {queued, running}
    # When the lost-jobs function handles them
    failed = deliver(LostJobsFunction(container), records, "lostjobs")
    # Then both jobs ended failed with worker_lost, and the tenant's slots came back
    assert failed == set()
    for job_id in (queued, running):
        job = container.job_repository.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.error is not None and job.error.code == WORKER_LOST
        assert "dead-letter" in job.error.message
    assert usage(container) == TenantUsage(pending=0, running=0)
    # And the same messages seen again change nothing (a terminal job is never changed)
    versions = [container.job_repository.get(j).version for j in (queued, running)]  # type: ignore[union-attr]
    assert deliver(LostJobsFunction(container), records, "lostjobs") == set()
    assert usage(container) == TenantUsage(pending=0, running=0)
    assert [container.job_repository.get(j).version for j in (queued, running)] == versions  # type: ignore[union-attr]


def test_a_terminal_job_is_never_changed_by_its_dead_lettered_message(
    stack: Provisioned, container: Container
) -> None:
    # Given a job that was cancelled while its message went on to be dead-lettered
    job_id = submit(container)
    container.job_service.cancel(TENANT, job_id)
    records = dead_letter_all(stack)
    before = container.job_repository.get(job_id)
    # When the lost-jobs function handles the message
    assert deliver(LostJobsFunction(container), records, "lostjobs") == set()
    # Then the job is as it was, and the slots were counted back once only (by the cancel)
    assert container.job_repository.get(job_id) == before
    assert usage(container) == TenantUsage(pending=0, running=0)


def test_a_job_under_a_live_lease_is_looked_at_again_when_the_lease_ends(
    stack: Provisioned, container: Container
) -> None:
    # Given a running job whose worker still holds its lease, and a copy of its message that
    # was dead-lettered
    job_id = submit(container)
    claim(container, job_id, lease_seconds=600)
    records = dead_letter_all(stack)
    # When the lost-jobs function handles it
    failed = deliver(LostJobsFunction(container), records, "lostjobs")
    # Then the job is left to its worker, and the message stays for a later look
    assert failed == {records[0]["messageId"]}
    job = container.job_repository.get(job_id)
    assert job is not None and job.status is JobStatus.RUNNING
    assert usage(container) == TenantUsage(pending=1, running=1)


def _removals(reader: StreamReader) -> list[dict[str, Any]]:
    return [r for r in reader.poll() if r["eventName"] == "REMOVE"]


def _expire(container: Container, job_id: str) -> None:
    """What DynamoDB's TTL does to an expired item: deletes it."""
    container.client("dynamodb").delete_item(
        TableName=container.settings.jobs_table, Key={"job_id": {"S": job_id}}
    )


def test_a_pending_job_removed_by_ttl_frees_its_slots_once(
    stack: Provisioned, container: Container
) -> None:
    # Given a queued job, a running one and a finished one of a tenant
    reader = StreamReader(boto3.client("dynamodb"), stack.settings.jobs_table)
    queued, running, finished = submit(container), submit(container), submit(container)
    claim(container, running, lease_seconds=600)
    container.job_service.cancel(TENANT, finished)
    assert usage(container) == TenantUsage(pending=2, running=1)
    reader.poll()  # the records so far: inserts and updates
    # When TTL removes their items and the stream's REMOVE records reach the function
    for job_id in (queued, running, finished):
        _expire(container, job_id)
    records = _removals(reader)
    assert len(records) == 3
    assert deliver(ExpiredJobsFunction(container), records, "expiry") == set()
    # Then the pending and running slots came back
    assert usage(container) == TenantUsage(pending=0, running=0)
    # And the same records delivered again (streams are at-least-once) free nothing more
    assert deliver(ExpiredJobsFunction(container), records, "expiry") == set()
    assert usage(container) == TenantUsage(pending=0, running=0)
    # And the release markers' own removal later frees nothing either
    table = container.settings.jobs_table
    for item in boto3.client("dynamodb").scan(TableName=table)["Items"]:
        if item["job_id"]["S"].startswith("released#"):
            _expire(container, item["job_id"]["S"])
    assert deliver(ExpiredJobsFunction(container), _removals(reader), "expiry") == set()
    assert usage(container) == TenantUsage(pending=0, running=0)


# ---------------------------------------------------------------- through the fault front


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Provisioned, AwsFaultProxy]]:
    """The stack provisioned in the emulator, and the fault front before it (faults off)."""
    emulator = Emulator().start()
    faults = AwsFaultProxy(emulator.url, PLAN).start()
    try:
        for name, value in {
            "AWS_ENDPOINT_URL": emulator.url,
            **emulator.credentials.environment(),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        boto3.DEFAULT_SESSION = None
        prefix = f"slots-{uuid.uuid4().hex[:8]}"
        provisioned = provision(prefix, secret_value="sk-ant-test-not-a-real-key")
        _redrive(provisioned)
        monkeypatch.setenv("AWS_ENDPOINT_URL", faults.url)
        boto3.DEFAULT_SESSION = None
        yield provisioned, faults
    finally:
        faults.close()
        emulator.stop()
        boto3.DEFAULT_SESSION = None


def _fragile(settings: Any) -> Container:
    """A container whose clients make one attempt per call: every fault reaches the code."""
    container = Container(settings)
    once = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    for service in ("dynamodb", "sqs"):
        container._clients[service] = boto3.client(service, config=once)
    return container


def _until_settled(function: Any, records: list[dict[str, Any]], name: str) -> int:
    """Deliver the records until none fails, as the event source would; the invocations."""
    for invocation in range(1, 200):
        failed = deliver(function, records, name)
        records = [r for r in records if _identifier(r) in failed]
        if not records:
            return invocation
    raise AssertionError("the records never settled")


PLAN = FaultPlan(
    rate=0.5,
    seed=7,
    weights={"throttle": 0.2, "internal": 0.2, "internal_after": 0.6},
    services=frozenset({"dynamodb"}),
)


def test_with_aws_faults_a_dead_lettered_job_frees_its_slots_exactly_once(
    faulty: tuple[Provisioned, AwsFaultProxy],
) -> None:
    # Given dead-lettered jobs of a tenant, queued and running under lapsed leases
    provisioned, faults = faulty
    steady = Container(provisioned.settings)
    jobs = [submit(steady) for _ in range(4)]
    for job_id in jobs[:2]:
        claim(steady, job_id, lease_seconds=-60)
    records = dead_letter_all(provisioned)
    assert len(records) == 4
    # When the lost-jobs function handles them while half its table calls fail (most of
    # those after they were applied), retried until each settles
    faults.enabled = True
    invocations = _until_settled(
        LostJobsFunction(_fragile(provisioned.settings)), records, "lostjobs"
    )
    faults.enabled = False
    # Then faults were met on the way, each job ended worker_lost once, and the slots are
    # back exactly (not below zero)
    assert invocations > 1 and faults.stats()["injected"]
    for job_id in jobs:
        job = steady.job_repository.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.error is not None and job.error.code == WORKER_LOST
    assert usage(steady) == TenantUsage(pending=0, running=0)


def test_with_aws_faults_removed_jobs_free_their_slots_exactly_once(
    faulty: tuple[Provisioned, AwsFaultProxy],
) -> None:
    # Given queued and running jobs of a tenant whose items TTL removed
    provisioned, faults = faulty
    steady = Container(provisioned.settings)
    reader = StreamReader(boto3.client("dynamodb"), provisioned.settings.jobs_table)
    jobs = [submit(steady) for _ in range(4)]
    for job_id in jobs[:2]:
        claim(steady, job_id, lease_seconds=600)
    assert usage(steady) == TenantUsage(pending=4, running=2)
    reader.poll()
    for job_id in jobs:
        _expire(steady, job_id)
    records = _removals(reader)
    assert len(records) == 4
    # When the expired-jobs function handles the REMOVE records while half its table calls
    # fail, retried until each settles
    faults.enabled = True
    invocations = _until_settled(
        ExpiredJobsFunction(_fragile(provisioned.settings)), records, "expiry"
    )
    faults.enabled = False
    # Then faults were met, and the slots are back exactly
    assert invocations > 1 and faults.stats()["injected"]
    assert usage(steady) == TenantUsage(pending=0, running=0)

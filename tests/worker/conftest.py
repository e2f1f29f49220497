"""Fixtures for the worker: moto resources, the fake Messages API, the worker function."""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from claude_jobs.adapters.jobs_table import DynamoJobRepository
from claude_jobs.models import Job, JobRequest
from claude_jobs.wiring import Container
from claude_jobs.worker.function import WorkerFunction
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic
from claude_jobs_tools.local.fake_bedrock import Credentials, FakeBedrock
from claude_jobs_tools.provision import Provisioned
from tests.conftest import agent_uid_range
from tests.worker.image_layout import (  # noqa: F401 - the image-layout tests' fixtures
    image_site,
    moto_server,
    shared_dir,
    task_root,
)

ROOT = Path(__file__).resolve().parents[2]
SQS_EVENT = ROOT / "events" / "sqs_job.json"

#: The key stored in the (emulated) Secrets Manager: the worker's real key in these tests.
REAL_KEY = "sk-ant-test-worker-real-key-0123456789"
#: The worker role's credentials in the Bedrock tests: what the proxy must sign with.
WORKER_ROLE = Credentials(
    access_key="test-worker-role-key-id",
    secret_key="test-worker-role-secret-0123456789",
    token="test-worker-role-session-token-0123456789",
)
#: The Bedrock deployment's models in these tests: one name, one inference profile.
BEDROCK_MODELS = {"claude-sonnet-4-5": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}


@dataclass
class LambdaContext:
    """What the worker reads from Lambda's context object: like Lambda's, its remaining
    time counts down from the invocation's start (here: the context's making)."""

    remaining_ms: int = 900_000
    aws_request_id: str = "req-worker-test"
    function_name: str = "claude-jobs-worker"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:worker"
    log_group_name: str = "/aws/lambda/worker"
    log_stream_name: str = "stream"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(self.remaining_ms - int((time.monotonic() - self.started) * 1000), 0)


def sqs_event(job: Job, message_id: str = "msg-1") -> dict[str, Any]:
    """The sample SQS event (events/sqs_job.json), carrying this job's message."""
    event: dict[str, Any] = copy.deepcopy(json.loads(SQS_EVENT.read_text()))
    record = event["Records"][0]
    record["messageId"] = message_id
    record["body"] = json.dumps(
        {"job_id": job.job_id, "tenant_id": job.tenant_id}, separators=(",", ":")
    )
    return event


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """The fake Messages API; it accepts only the real key, as the real API would."""
    with FakeAnthropic(api_key=REAL_KEY) as server:
        yield server


@dataclass
class WorkerStack:
    provisioned: Provisioned
    container: Container
    function: WorkerFunction
    fake: FakeAnthropic
    tenant: str = "acme"
    contexts: list[LambdaContext] = field(default_factory=list)

    @property
    def bedrock(self) -> FakeBedrock:
        """The upstream of a Bedrock deployment's worker."""
        assert isinstance(self.fake, FakeBedrock)
        return self.fake

    @property
    def repo(self) -> DynamoJobRepository:
        return self.container.job_repository

    def submit(self, prompt: str = "Say hello.", **options: Any) -> Job:
        request = JobRequest(prompt=prompt, **options)
        return self.container.job_service.submit(self.tenant, request).job

    def deliver(
        self, job: Job, context: LambdaContext | None = None, message_id: str = "msg-1"
    ) -> dict[str, Any]:
        """Invoke the worker as the SQS event source would; return its batch response."""
        return self.function.handler(sqs_event(job, message_id), context or LambdaContext())

    def get(self, job: Job) -> Job:
        found = self.repo.get(job.job_id)
        assert found is not None
        return found

    def deliver_in_thread(
        self, job: Job, context: LambdaContext | None = None
    ) -> tuple[threading.Thread, dict[str, Any]]:
        answer: dict[str, Any] = {}

        def run() -> None:
            answer.update(self.deliver(job, context))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, answer


def _worker_stack(
    prefix: str, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> Iterator[WorkerStack]:
    from claude_jobs_tools.provision import provision

    monkeypatch.setenv("_HANDLER", "handler.lambda_handler")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "claude-jobs-worker")
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    provisioned = provision(
        prefix,
        secret_value=REAL_KEY,
        anthropic_base_url=fake.url,
        agent_max_retries=0,
        cancel_poll_seconds=0.2,
        retry_base_seconds=1,
        agent_uid_range=agent_uid_range(),
        **settings,
    )
    container = Container(provisioned.settings)
    function = WorkerFunction(container, min_run_seconds=1)
    yield WorkerStack(provisioned, container, function, fake)
    if "processor" in function.__dict__:
        function.shutdown()
        function.processor.ports.proxy.close()


@pytest.fixture
def stack(aws: None, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerStack]:
    """Moto resources, the fake upstream, and a worker function wired to both.

    The worker process's environment looks like Lambda's (AWS credentials, `_HANDLER`, …),
    so that tests can prove none of it reaches the agent."""
    yield from _worker_stack("wt", fake, monkeypatch)


@pytest.fixture
def warm_stack(
    aws: None, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerStack]:
    """`stack`, with warm start on (as deployed): after each job the worker starts the CLI
    for the next one."""
    yield from _worker_stack("ww", fake, monkeypatch, warm_start=True)


@pytest.fixture
def fake_bedrock() -> Iterator[FakeBedrock]:
    """The fake Bedrock runtime; it accepts only requests signed with the worker role's
    credentials, as Bedrock would."""
    with FakeBedrock(credentials=WORKER_ROLE, region="us-east-1") as server:
        yield server


@pytest.fixture
def bedrock_stack(
    aws: None, fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerStack]:
    """A worker deployed with `model_provider=bedrock`: its role's credentials in its
    environment (as Lambda gives them), the fake Bedrock runtime as its endpoint, and no
    Anthropic secret at all (deleted after provisioning: reading it would fail)."""
    from claude_jobs_tools.provision import provision

    monkeypatch.setenv("_HANDLER", "handler.lambda_handler")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "claude-jobs-worker")
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    provisioned = provision(
        "wb",
        secret_value=REAL_KEY,
        model_provider="bedrock",
        bedrock_models=BEDROCK_MODELS,
        bedrock_endpoint_url=fake_bedrock.url,
        aws_region="us-east-1",
        agent_max_retries=0,
        cancel_poll_seconds=0.2,
        retry_base_seconds=1,
        agent_uid_range=agent_uid_range(),
    )
    boto3.client("secretsmanager").delete_secret(
        SecretId=provisioned.settings.anthropic_secret_id, ForceDeleteWithoutRecovery=True
    )
    # Lambda's role credentials, in the worker process's environment (set after moto's own).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", WORKER_ROLE.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WORKER_ROLE.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", WORKER_ROLE.token or "")
    container = Container(provisioned.settings)
    function = WorkerFunction(container, min_run_seconds=1)
    yield WorkerStack(provisioned, container, function, fake_bedrock)
    if "processor" in function.__dict__:
        function.processor.ports.proxy.close()


def sandboxes_of(job: Job) -> list[Path]:
    """The job's sandbox directories still on disk (the worker removes them)."""
    return sorted(Path(tempfile.gettempdir()).glob(f"claude-job-{job.job_id}-*"))


def processes_in(root: Path) -> list[int]:
    """Pids of live processes whose working directory is inside `root`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):
            pids.append(int(entry.name))
    return pids


def s3_text(key: str, bucket: str) -> str:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    return str(body.read().decode())

"""Issue 27: the Lambda Runtime API grants an agent nothing worth having.

The one-user image layout (worker and agent as one non-root user, only the built artifact on
the path) behind a Runtime API with the emulator's semantics on loopback
(`claude_jobs_tools.local.runtime_api`), fed by an SQS event source as Lambda's. The worker
process plays the runtime as awslambdaric does: `next`, the handler, its answer; when its
answer is refused it raises and the process exits (Lambda starts a fresh environment).

A hostile agent reads its own invocation through `next`, answers it (its message is deleted),
takes the next invocation (another tenant's job) and answers it too (that message is
deleted: nobody would run it), takes the one after and posts an error. The defence: the jobs
table is the truth and the reconciler re-drives the job whose message vanished; the worker's
conditional claim keeps every agent run single.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.reconcile.function import ReconcilerFunction
from claude_jobs.wiring import Container
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, RecordedRequest, Text, ToolUse
from claude_jobs_tools.local.runtime_api import RuntimeApi, SqsEventSource
from tests.lambda_context import lambda_context
from tests.worker.conftest import REAL_KEY
from tests.worker.image_layout import as_runtime_user, runtime_python, worker_env

ATTACK = "RUNTIME-ATTACK"

#: The runtime's loop as awslambdaric runs it (bootstrap.run, LambdaRuntimeClient): a refused
#: answer raises out of the loop and the process exits.
RUNTIME_HARNESS = """
import json, os, sys, time, urllib.error, urllib.request
sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
import handler

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"

class Context:
    function_name = "claude-jobs-worker"
    memory_limit_in_mb = 1024
    def __init__(self, request_id, deadline_ms, arn):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self._deadline_ms = deadline_ms
    def get_remaining_time_in_millis(self):
        return max(int(self._deadline_ms - time.time() * 1000), 0)

print("WORKER_PID", os.getpid(), flush=True)
while True:
    with urllib.request.urlopen(API + "next", timeout=600) as got:
        request_id = got.headers["Lambda-Runtime-Aws-Request-Id"]
        context = Context(
            request_id,
            int(got.headers["Lambda-Runtime-Deadline-Ms"]),
            got.headers["Lambda-Runtime-Invoked-Function-Arn"],
        )
        event = json.loads(got.read())
    try:
        kind, body = "response", handler.lambda_handler(event, context)
    except Exception as exc:
        kind, body = "error", {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    answer = urllib.request.Request(
        API + request_id + "/" + kind, data=json.dumps(body).encode(), method="POST"
    )
    try:
        urllib.request.urlopen(answer, timeout=30).close()
    except urllib.error.HTTPError as refused:
        print("REFUSED", request_id, refused.code, flush=True)
        raise
    print("ANSWERED", request_id, kind, flush=True)
"""


def attack_command(address: str) -> str:
    """What the hostile agent runs: its own invocation through `next`, a response for it, the
    next invocation answered as a success, the one after answered as an error."""
    api = f"http://{address}/2018-06-01/runtime/invocation"
    take = (
        "curl -s -m 90 -D $d/h$n -o $d/b$n " + api + "/next; "
        "id=$(grep -i '^lambda-runtime-aws-request-id' $d/h$n | cut -d' ' -f2 | tr -d '\\r\\n'); "
        'echo "took#$n $id $(tr -d \'\\\\\' < $d/b$n | grep -o \'"job_id":"[^"]*"\' | head -1)"; '
    )
    post = (
        "echo \"$n:$1=$(curl -s -o /dev/null -w '%{http_code}' -X POST "
        "-d '{\"batchItemFailures\":[]}' " + api + '/$id/$1)"; '
    )
    return (
        "d=$(mktemp -d); "
        f"step() {{ n=$((n+1)); {take}{post}}}; n=0; "
        "step response; step response; step error"
    )


def first_prompt(request: RecordedRequest) -> str:
    messages = (request.body or {}).get("messages") or []
    content = messages[0].get("content") if messages else ""
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


def model(request: RecordedRequest) -> Text | ToolUse:
    """Decides from the conversation: an attack prompt with no tool result yet → the attack;
    with its result → report it; anything else → the victim's answer."""
    prompt = first_prompt(request)
    found = re.search(rf"{ATTACK} (127\.0\.0\.1:\d+)", prompt)
    if found is None:
        return Text(f"answered: {prompt[-40:]}")
    if not request.tool_results():
        return ToolUse("Bash", {"command": attack_command(found.group(1)), "timeout": 300000})
    return Text("attack done:\n" + request.tool_results()[0]["content"])


class Environments:
    """Execution environments of the worker, one at a time, as Lambda runs them: when the
    runtime's process exits a fresh one starts (the Runtime API's unanswered invocation
    fails)."""

    def __init__(self, python: str, root: Path, env: dict[str, str], api: RuntimeApi):
        self._args = (python, root, env)
        self._api = api
        self._stop = threading.Event()
        self.exits: list[tuple[int, str]] = []
        self.process: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Environments:
        self._thread.start()
        return self

    def _run(self) -> None:
        python, root, env = self._args
        while not self._stop.is_set():
            process = subprocess.Popen(
                [python, "-S", "-c", RUNTIME_HARNESS],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **as_runtime_user(),
                cwd=root,
                env=env,
                text=True,
                start_new_session=True,
            )
            self.process = process
            stdout, stderr = process.communicate()
            self._api.reset()  # the environment is gone with its runtime
            with_children(process.pid, signal.SIGKILL)
            self.exits.append((process.returncode, stdout + stderr[-3000:]))

    def stop(self) -> None:
        self._stop.set()
        if self.process is not None:
            with_children(self.process.pid, signal.SIGKILL)
        self._thread.join(timeout=30)


def with_children(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    with RuntimeApi() as api:
        yield api


@pytest.mark.cli
def test_an_agent_answering_invocations_through_the_runtime_api_loses_no_job(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    runtime_api: RuntimeApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    python = runtime_python()
    if python is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that the runtime user may run")
    from claude_jobs_tools.provision import provision

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ClaudeJobs")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "claude-jobs-reconciler")
    with FakeAnthropic(api_key=REAL_KEY, default=model) as fake:
        provisioned = provision("rt", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        settings = provisioned.settings
        container = Container(settings)
        sqs = container.client("sqs")
        queue_url = settings.jobs_queue_url
        # A short visibility timeout: a message answered with an error comes back soon
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "3"})
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        # Given a hostile job (tenant A) whose prompt names the Runtime API, then two jobs of
        # another tenant
        service = container.job_service
        hostile = service.submit(
            "tenant-a",
            JobRequest(prompt=f"{ATTACK} {runtime_api.address}", allowed_tools=["Bash"]),
        ).job
        victims = [
            service.submit("tenant-b", JobRequest(prompt=f"victim job {i}")).job for i in (1, 2)
        ]
        jobs = [hostile, *victims]
        env = worker_env(task_root, image_site, moto_server, settings, fake.url)
        env["AWS_LAMBDA_RUNTIME_API"] = runtime_api.address
        # (its own /tmp: the worker sweeps what appears in its scratch directories, and on
        # this machine other tests write to the shared /tmp)
        scratch = Path(tempfile.mkdtemp(prefix="cj-runtime-api-"))
        os.chmod(scratch, 0o777)  # noqa: S103 - the runtime user writes here
        env["SCRATCH_DIRS"] = env["TMPDIR"] = str(scratch)
        # And one execution environment behind the Runtime API, fed by the SQS event source,
        # and the reconciler on its schedule (here every 2 s, 10 s of grace)
        reconciler = ReconcilerFunction(
            Container(settings.model_copy(update={"reconcile_grace_seconds": 10}))
        )
        redriven: list[str] = []
        environments = Environments(python, task_root, env, runtime_api).start()
        source = SqsEventSource(runtime_api, queue_url, queue_arn).start()
        try:
            # When the jobs run
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                stored = [container.job_repository.get(job.job_id) for job in jobs]
                if all(s is not None and s.status.is_terminal for s in stored):
                    break
                answer = reconciler.handler({}, lambda_context("reconciler"))
                redriven += answer["redriven"]
                time.sleep(2)
            time.sleep(8)  # duplicates of the re-driven messages reach the worker meanwhile
        finally:
            source.stop()
            environments.stop()
            shutil.rmtree(scratch, ignore_errors=True)
        # Then the agent really did what the Runtime API allows: it took its own invocation,
        # answered it, took another tenant's and answered it, took a third and failed it
        conversation = [r for r in fake.message_requests if ATTACK in first_prompt(r)]
        diagnosis = {
            "jobs": [container.job_repository.get(job.job_id) for job in jobs],
            "answers": [(body, answer.kind) for body, answer in source.answers],
            "exits": [(code, out[-2500:]) for code, out in environments.exits],
            "redriven": redriven,
            "conversation": [len(r.body["messages"]) for r in conversation],
        }
        results = [r.tool_results() for r in conversation if r.tool_results()]
        assert results, diagnosis
        report = results[0][0]["content"]
        steps = {
            int(n): job_id for n, job_id in re.findall(r'took#(\d) \S+ "job_id":"([^"]+)"', report)
        }
        assert steps[1] == hostile.job_id, report
        assert "1:response=202" in report and "2:response=202" in report, report
        assert "3:error=202" in report, report
        # (the next invocation is another tenant's job, unless a re-drive of the agent's own
        # message came first: the reconciler may duplicate a message, never a run)
        swallowed = steps[2]
        assert swallowed in {v.job_id for v in victims} | {hostile.job_id}, report
        # And the worker's own answer was refused: its runtime exited (a fresh environment
        # took the next jobs)
        assert any("REFUSED" in out and code != 0 for code, out in environments.exits), [
            out[-800:] for _, out in environments.exits
        ]
        # And every job, its own and the other tenant's, ended once, succeeded, its agent
        # run once; the job whose message the agent deleted was re-driven
        for job in jobs:
            done = container.job_repository.get(job.job_id)
            assert done is not None and done.status is JobStatus.SUCCEEDED, (done, diagnosis)
            assert done.attempts == 1, done
            runs = [
                r
                for r in fake.message_requests
                if (job.prompt or "") in first_prompt(r) and len(r.body["messages"]) == 1
            ]
            assert len(runs) == 1, (job.job_id, len(runs))
        assert set(redriven) >= {v.job_id for v in victims} - {
            json.loads(body)["job_id"] for body, answer in source.answers if answer.kind == "error"
        }
        # And no slot leaked
        for tenant in ("tenant-a", "tenant-b"):
            usage = container.job_repository.tenant_usage(tenant)
            assert (usage.pending, usage.running) == (0, 0), (tenant, usage)

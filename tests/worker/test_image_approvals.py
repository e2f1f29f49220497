"""Approvals in the image layout (tests/worker/test_image.py): one warm worker process as the
runtime user (worker and agent one non-root user, warm start on, the code directory read-only,
only the built artifact on the path) handles a job whose call waits, is decided, and whose
message then comes twice: a denied call never runs and the model sees the denial; an allowed
one runs once."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from claude_jobs.approval_models import ApprovalDecision
from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.ports import Transition
from claude_jobs.resources import JOBS_QUEUE
from claude_jobs.wiring import Container
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic
from tests.worker.conftest import REAL_KEY, sqs_event
from tests.worker.image_layout import (
    as_runtime_user,
    own_scratch,
    required_runtime_python,
    worker_env,
)
from tests.worker.test_approvals_worker import DENIAL, marker_model, result_text, results_for
from tests.worker.test_image_segments import SEGMENT_HARNESS

pytestmark = [pytest.mark.cli, pytest.mark.timeout(600)]


@pytest.mark.parametrize("decision", ["deny", "allow"])
def test_a_decision_is_carried_out_once_in_the_image_layout(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    shared_dir: Path,
    decision: Literal["deny", "allow"],
) -> None:
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    marker = shared_dir / "marker"
    with FakeAnthropic(api_key=REAL_KEY, default=marker_model(marker)) as fake:
        provisioned = provision(
            f"imgapr{decision}", secret_value=REAL_KEY, anthropic_base_url=fake.url
        )
        container = Container(provisioned.settings)
        repo = container.job_repository
        job = container.job_service.submit(
            "tenant-approvals",
            JobRequest(
                prompt="Make the marker.",
                allowed_tools=["Bash"],
                approvals=["Bash(touch:*)"],
            ),
        ).job
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
        env["WARM_START"] = "1"
        env["WORKER_INVOCATION_SECONDS"] = "120"
        own_scratch(env, shared_dir)
        event = sqs_event(job)
        event["Records"][0]["eventSourceARN"] = provisioned.queue_arns[JOBS_QUEUE.logical_id]
        log = shared_dir / "worker.log"
        worker = subprocess.Popen(
            [python, "-S", "-c", SEGMENT_HARNESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            cwd=task_root,
            env=env,
            **as_runtime_user(),
        )
        assert worker.stdin is not None and worker.stdout is not None

        output: list[str] = []  # the worker's log (stdout)

        def invoke() -> dict[str, object]:
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(json.dumps(event) + "\n")
            worker.stdin.flush()
            for line in worker.stdout:
                output.append(line)
                if line.startswith("ANSWER "):
                    answer: dict[str, object] = json.loads(line.removeprefix("ANSWER "))
                    return answer
            raise AssertionError(f"the worker ended: {log.read_text()[-3000:]}")

        try:
            # When the job's message comes: its call waits
            assert invoke() == {"batchItemFailures": []}, "".join(output)[-6000:]
            waiting = repo.get(job.job_id)
            assert waiting is not None and waiting.status is JobStatus.AWAITING_APPROVAL
            pending = waiting.pending_approval
            assert pending is not None and pending.tool_use_id == "toolu_marker"
            # And a person denies it (as the API records it), and the message comes twice
            repo.transition(
                Transition(
                    job_id=job.job_id,
                    to=JobStatus.QUEUED,
                    from_=[JobStatus.AWAITING_APPROVAL],
                    set_fields={
                        "approval_decision": ApprovalDecision(
                            approval_id=pending.approval_id,
                            tool_use_id=pending.tool_use_id,
                            tool=pending.tool,
                            decision=decision,
                            message=DENIAL if decision == "deny" else None,
                            decided_at=datetime.now(UTC),
                        ),
                        "continuing": True,
                    },
                    remove_fields=["pending_approval"],
                )
            )
            assert invoke() == {"batchItemFailures": []}, "".join(output)[-6000:]
            assert invoke() == {"batchItemFailures": []}, "".join(output)[-6000:]
        finally:
            worker.stdin.close()
            worker.wait(timeout=60)
        # Then the job went on and succeeded: a denied call never ran and the model saw the
        # denial; an allowed one ran, once
        done = repo.get(job.job_id)
        assert done is not None
        assert done.status is JobStatus.SUCCEEDED, done.error
        (result,) = results_for(fake.message_requests[-1], "toolu_marker")
        if decision == "deny":
            assert not marker.exists()
            assert result["is_error"] and result_text(result) == DENIAL
        else:
            assert marker.exists() and not result["is_error"]
        assert done.usage is not None and done.usage.num_turns >= 2

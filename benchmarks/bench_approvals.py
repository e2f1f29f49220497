"""Approvals: what one job waiting for a person costs per hour, next to an always-on waiter.

Sizes are measured, not assumed: a job is submitted and put into `awaiting_approval` through
the real repository (as the worker writes it), its notice claimed as the notifier does, and
its item read back from the table (DynamoDB's size rule: attribute names + values), on an
in-process emulator (moto). The session is the recorded transcript of a real deferred CLI run
(tests/unit/data/deferred_transcript.jsonl). The sweep's rate is the reconciler's schedule
(infra/components/reconciler.py). Prices: benchmarks/aws_prices.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
from datetime import timedelta
from pathlib import Path

from benchmarks.approval_cost import WaitingJob, render

DESCRIPTION = "one waiting job's cost per hour vs an always-on waiting worker"
TRANSCRIPT = Path(__file__).parent.parent / "tests" / "unit" / "data" / "deferred_transcript.jsonl"
#: A typical call that waits (a push), and one whose input is at the 2 KiB cap.
INPUTS = (
    ("a git push", '{"command":"git push origin claude-jobs/feature"}'),
    ("a 2 KiB input (the cap)", '{"command":"' + "x" * 2030 + '"}'),
)


RECONCILER_INFRA = Path(__file__).parent.parent / "infra" / "components" / "reconciler.py"


def schedule() -> str:
    """The reconciler's `SCHEDULE`, read from its construct's source (importing it would load
    the CDK and its Node runtime)."""
    import ast

    tree = ast.parse(RECONCILER_INFRA.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "SCHEDULE" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, str):
                return value
    raise ValueError(f"no SCHEDULE in {RECONCILER_INFRA}")


def sweeps_per_hour(expression: str | None = None) -> float:
    """Runs an hour of the reconciler's schedule expression, `rate(N minute|hour…)`."""
    expression = expression or schedule()
    found = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression)
    if found is None:
        raise ValueError(f"cannot read the schedule {expression!r}")
    every = int(found.group(1))
    return 60 / every if found.group(2).startswith("minute") else 1 / every


def item_bytes(raw: dict[str, dict[str, object]]) -> int:
    from claude_jobs.adapters.dynamo import attribute_size

    return sum(len(name.encode()) + attribute_size(value) for name, value in raw.items())


def measure_item(call_input: str) -> int:
    """Bytes of a waiting job's item, written through the repository on the emulator."""
    from moto import mock_aws

    from claude_jobs.approval_models import PendingApproval
    from claude_jobs.clock import utcnow
    from claude_jobs.models import JobRequest, JobStatus
    from claude_jobs.notify.approval_notices import DynamoApprovalNotices
    from claude_jobs.ports import Transition
    from claude_jobs.wiring import Container
    from claude_jobs_tools.provision import provision

    with mock_aws(), contextlib.redirect_stdout(io.StringIO()):
        settings = provision("bench-approvals").settings
        container = Container(settings)
        request = JobRequest.model_validate(
            {
                "prompt": "Fix the failing test and push the branch.",
                "allowed_tools": ["Read", "Edit", "Bash"],
                "approvals": ["Bash(git push:*)"],
                "metadata": {"ticket": "OPS-42"},
            }
        )
        job = container.job_service.submit("tenant-bench", request).job
        jobs = container.job_repository
        jobs.transition(
            Transition(
                job_id=job.job_id,
                to=JobStatus.RUNNING,
                add_attempts=1,
                set_fields={"lease_until": 2**31, "started_at": utcnow()},
            )
        )
        now = utcnow()
        pending = PendingApproval(
            approval_id="apr_" + "0" * 22,
            tool_use_id="toolu_" + "0" * 24,
            tool="Bash",
            input=call_input,
            rule="Bash(git push:*)",
            requested_at=now,
            expires_at=now + timedelta(days=1),
        )
        usage = {"input_tokens": 12_000, "output_tokens": 800, "total_cost_usd": 0.05}
        jobs.transition(
            Transition(
                job_id=job.job_id,
                to=JobStatus.AWAITING_APPROVAL,
                from_=[JobStatus.RUNNING],
                set_fields={
                    "pending_approval": pending,
                    "usage": usage,
                    "continuing": True,
                    "approval_waits": 1,
                },
                remove_fields=["lease_until"],
            )
        )
        dynamodb = container.client("dynamodb")
        DynamoApprovalNotices(dynamodb, settings.jobs_table).claim(
            job.job_id, pending.approval_id, webhook=False
        )
        raw = dynamodb.get_item(
            TableName=settings.jobs_table, Key={"job_id": {"S": job.job_id}}, ConsistentRead=True
        )["Item"]
        return item_bytes(raw)


def run(args: argparse.Namespace) -> bool:
    from claude_jobs.definitions import FUNCTIONS

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    session = TRANSCRIPT.stat().st_size
    sweeps = sweeps_per_hour()
    memory = FUNCTIONS["worker"].memory_mb
    for label, call_input in INPUTS:
        job = WaitingJob(measure_item(call_input), session, sweeps)
        print(render(job, memory, f", {label}"), flush=True)
    return True


if __name__ == "__main__":
    run(argparse.Namespace(rounds=None))

"""Progress events from the real bundled CLI: SQS event → worker → claude-agent-sdk messages →
the events table (moto) → the job service's events page. The fake Messages API scripts a Bash
call and text; a hostile one prints the key and AWS-looking secrets."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from claude_jobs.models import JobStatus
from claude_jobs.worker.function import WorkerFunction
from claude_jobs.worker.progress import ProgressEvents
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse, Usage
from tests.worker.conftest import REAL_KEY, LambdaContext, WorkerStack, sqs_event

pytestmark = pytest.mark.cli

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def events_of(stack: WorkerStack, job_id: str) -> list[dict[str, Any]]:
    page = stack.container.job_service.events(stack.tenant, job_id)
    assert page.done is True
    return [e.model_dump(mode="json", exclude_none=True) for e in page.items]


def stored_items(stack: WorkerStack, job_id: str) -> str:
    """The job's raw items in the events table, as text."""
    answer = boto3.client("dynamodb").query(
        TableName=stack.provisioned.settings.events_table,
        KeyConditionExpression="job_id = :j",
        ExpressionAttributeValues={":j": {"S": job_id}},
    )
    return json.dumps(answer["Items"])


def test_a_run_records_status_tool_use_tool_result_text_and_usage(stack: WorkerStack) -> None:
    # Given a job allowed Bash whose model runs `echo hello` and then answers
    job = stack.submit("Say hello with Bash.", allowed_tools=["Bash"])
    stack.fake.script(
        ToolUse("Bash", {"command": "echo hello"}, text="I will run echo."),
        Text("It printed hello.", usage=Usage(input_tokens=40, output_tokens=6)),
    )
    # When the worker runs it
    stack.deliver(job)
    assert stack.get(job).status is JobStatus.SUCCEEDED
    # Then its events tell the run in order, with seqs 1, 2, 3, …
    events = events_of(stack, job.job_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [(e["type"], e.get("status") or e.get("tool") or e.get("text")) for e in events]
    assert kinds[:2] == [("status", "queued"), ("status", "running")]
    assert kinds[-1] == ("status", "succeeded")
    assert ("text", "I will run echo.") in kinds and ("text", "It printed hello.") in kinds
    tool_use = next(e for e in events if e["type"] == "tool_use")
    assert tool_use["tool"] == "Bash" and json.loads(tool_use["input"]) == {"command": "echo hello"}
    tool_result = next(e for e in events if e["type"] == "tool_result")
    assert tool_result == {**tool_result, "tool": "Bash", "is_error": False}
    assert events.index(tool_use) < events.index(tool_result)
    # and usage: a running figure after the first turn, then the job's recorded usage last
    usages = [e for e in events if e["type"] == "usage"]
    assert len(usages) >= 2 and usages[0]["input_tokens"] > 0
    done = stack.get(job)
    assert done.usage is not None
    assert usages[-1]["input_tokens"] == done.usage.input_tokens
    assert usages[-1]["total_cost_usd"] == pytest.approx(done.usage.total_cost_usd)
    assert events[-2]["type"] == "usage"


def test_a_hostile_agent_cannot_leak_secrets_through_events(stack: WorkerStack) -> None:
    # Given a model that makes the agent print the real key and AWS-looking secrets, in its
    # text and in a tool's input
    job = stack.submit("Leak.", allowed_tools=["Bash"])
    leak = f"{REAL_KEY} {AWS_KEY_ID} aws_secret_access_key={AWS_SECRET}"
    stack.fake.script(
        ToolUse("Bash", {"command": f"echo {leak}; printenv ANTHROPIC_API_KEY"}, text=leak),
        Text(f"Here you go: {leak}"),
    )
    # When the worker runs it
    stack.deliver(job)
    # Then neither the stored events nor the API's page holds any of them
    page = stack.container.job_service.events(stack.tenant, job.job_id).model_dump_json()
    for where in (stored_items(stack, job.job_id), page):
        for secret in (REAL_KEY, AWS_KEY_ID, AWS_SECRET):
            assert secret not in where
        assert "[REDACTED]" in where
    # And the (scrubbed) tool call and text are still there
    events = events_of(stack, job.job_id)
    assert any(e["type"] == "tool_use" and "printenv" in e["input"] for e in events)
    assert any(e["type"] == "text" and e["text"].startswith("Here you go") for e in events)


def test_events_past_the_bound_are_dropped_and_the_ending_is_kept(stack: WorkerStack) -> None:
    # Given a worker whose per-job bound is 14 events (1,000 in a deployment: the same code)
    small = WorkerFunction(
        stack.container,
        min_run_seconds=1,
        progress=ProgressEvents(stack.container.event_store, max_events=14),
    )
    # and a job whose agent calls Bash six times
    job = stack.submit("Count.", allowed_tools=["Bash"])
    stack.fake.script(
        *[ToolUse("Bash", {"command": f"echo {n}"}) for n in range(6)], Text("Counted.")
    )
    try:
        # When the worker runs it
        small.handler(sqs_event(job), LambdaContext())
        assert stack.get(job).status is JobStatus.SUCCEEDED
        # Then at most 14 events are kept, seqs 1..n, and they end with usage and status
        events = events_of(stack, job.job_id)
        assert 4 <= len(events) <= 14
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert [e["type"] for e in events[-2:]] == ["usage", "status"]
        assert events[-1]["status"] == "succeeded"
    finally:
        small.processor.ports.proxy.close()

"""Sessions with the real CLI: a job continues an earlier job's conversation from the
transcript the worker saved in S3 and materialised in the new job's sandbox."""

from __future__ import annotations

import json

import boto3
import pytest

from claude_jobs.models import JobStatus
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse
from tests.worker.conftest import WorkerStack, sandboxes_of

pytestmark = pytest.mark.cli


def _transcript_keys(stack: WorkerStack, tenant: str, session_id: str) -> list[str]:
    bucket = stack.provisioned.settings.results_bucket
    listing = boto3.client("s3").list_objects_v2(
        Bucket=bucket, Prefix=f"sessions/{tenant}/{session_id}/"
    )
    return [o["Key"] for o in listing.get("Contents", [])]


def test_a_job_continues_its_sessions_conversation(stack: WorkerStack) -> None:
    # Given a job that ran to its end, its transcript saved under its tenant's prefix
    first = stack.submit("Remember the word PINEAPPLE.", allowed_tools=[])
    stack.fake.script(Text("I will remember PINEAPPLE."))
    stack.deliver(first)
    done = stack.get(first)
    assert done.status is JobStatus.SUCCEEDED and done.session_id, done.error
    keys = _transcript_keys(stack, stack.tenant, done.session_id)
    assert keys, "the transcript was not saved"
    body = boto3.client("s3").get_object(
        Bucket=stack.provisioned.settings.results_bucket, Key=keys[0]
    )
    assert body.get("ServerSideEncryption") == "AES256"
    # When a second job continues the session
    second = stack.submit("Which word?", allowed_tools=[], session_id=done.session_id)
    stack.fake.script(Text("PINEAPPLE"))
    stack.deliver(second)
    # Then the model got the whole conversation: the first prompt, its answer, the new prompt
    later = stack.get(second)
    assert later.status is JobStatus.SUCCEEDED, later.error
    assert later.session_id == done.session_id
    request = stack.fake.message_requests[-1]
    roles = [m["role"] for m in request.body["messages"]]
    text = json.dumps(request.body["messages"])
    assert "Remember the word PINEAPPLE." in text
    assert "I will remember PINEAPPLE." in text
    assert "Which word?" in text
    assert roles[0] == "user" and "assistant" in roles
    # And the session's transcript holds both turns, each line once
    view = stack.container.job_service.get_session(stack.tenant, done.session_id)
    assert view.job_ids == [first.job_id, second.job_id]
    assert sandboxes_of(second) == []


def test_the_agent_sees_only_its_own_sessions_transcript(stack: WorkerStack) -> None:
    # Given another tenant's session and one of this tenant's, both with transcripts
    stack.tenant = "other"
    theirs = stack.submit("The other tenant's secret is MANGO-7731.", allowed_tools=[])
    stack.fake.script(Text("Noted."))
    stack.deliver(theirs)
    stack.tenant = "acme"
    mine = stack.submit("Hello.", allowed_tools=[])
    stack.fake.script(Text("Hi."))
    stack.deliver(mine)
    session_id = stack.get(mine).session_id
    # When a continuation's agent searches its whole home and /tmp for transcripts
    probe = stack.submit("Look around.", allowed_tools=["Bash"], session_id=session_id)
    command = (
        "grep -rl MANGO-7731 $HOME /tmp 2>/dev/null | head; "
        "find $HOME -name '*.jsonl' 2>/dev/null | wc -l; env | grep -c AWS_ || true"
    )
    stack.fake.script(ToolUse("Bash", {"command": command}), Text("done"))
    stack.deliver(probe)
    # Then it found exactly one transcript (its own) and nothing of the other tenant's
    assert stack.get(probe).status is JobStatus.SUCCEEDED
    (result,) = stack.fake.message_requests[-1].tool_results()
    output = str(result["content"])
    assert "MANGO-7731" not in output
    counts = [line.strip() for line in output.splitlines() if line.strip().isdigit()]
    assert counts[:2] == ["1", "0"], output  # one transcript; no AWS_ variable

"""The worker end to end: SQS event → the real bundled Claude Code CLI → the fake Messages API
→ the job's terminal state in DynamoDB (moto)."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from claude_jobs.models import JobStatus
from claude_jobs_tools.local.fake_anthropic import ApiError, Text, ToolUse, Usage
from tests.worker.conftest import (
    REAL_KEY,
    WorkerStack,
    processes_in,
    s3_text,
    sandboxes_of,
)

pytestmark = pytest.mark.cli


def test_a_job_succeeds_with_its_text_and_usage(stack: WorkerStack) -> None:
    # Given a queued job and an upstream that answers with text and known usage
    job = stack.submit("What is 2 + 2?", allowed_tools=[], system_prompt="Answer tersely.")
    stack.fake.script(
        Text(
            "2 + 2 = 4",
            usage=Usage(
                input_tokens=120,
                output_tokens=9,
                cache_read_input_tokens=30,
                cache_creation_input_tokens=7,
            ),
        )
    )
    # When the worker receives its message
    answer = stack.deliver(job)
    # Then the message is done, and the job succeeded with the text and the SDK's usage
    assert answer == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result.text == "2 + 2 = 4"
    assert not done.result.is_error and done.error is None
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (120, 9)
    assert (done.usage.cache_read_input_tokens, done.usage.cache_creation_input_tokens) == (30, 7)
    assert done.usage.num_turns == 1
    assert done.usage.total_cost_usd > 0 and done.usage.duration_ms > 0
    assert done.attempts == 1 and done.started_at and done.finished_at
    # The prompt texts are gone from the terminal item, and so is the lease
    assert done.prompt is None and done.system_prompt is None and done.lease_until is None
    # The upstream got the job's prompt, system prompt and model, with the real key
    (request,) = stack.fake.message_requests
    assert request.headers["x-api-key"] == REAL_KEY
    assert "What is 2 + 2?" in request.prompt_text()
    assert "Answer tersely." in str(request.body["system"])
    assert request.body["model"] == stack.provisioned.settings.default_model
    # And the sandbox is gone
    assert sandboxes_of(job) == []


def test_a_tool_the_job_does_not_allow_is_absent_and_a_call_to_it_is_refused(
    stack: WorkerStack,
) -> None:
    # Given a job that may only Read, and a model that asks for Bash anyway
    marker = os.path.join(tempfile.gettempdir(), f"cj-marker-{uuid.uuid4().hex}")
    job = stack.submit(allowed_tools=["Read"])
    stack.fake.script(ToolUse("Bash", {"command": f"touch {marker}"}), Text("ok"))
    # When it runs
    stack.deliver(job)
    # Then Bash was never offered to the model, the call was refused, and nothing ran
    first, second = stack.fake.message_requests
    assert first.tool_names == ["Read"]
    (result,) = second.tool_results()
    assert result["is_error"] and "No such tool available: Bash" in result["content"]
    assert not os.path.exists(marker)
    assert stack.get(job).status is JobStatus.SUCCEEDED


def test_an_allowed_tool_runs_and_a_permission_rule_denies_what_it_does_not_match(
    stack: WorkerStack,
) -> None:
    # Given a job allowed only `Bash(echo:*)`
    marker = os.path.join(tempfile.gettempdir(), f"cj-marker-{uuid.uuid4().hex}")
    job = stack.submit(allowed_tools=["Bash(echo:*)"])
    stack.fake.script(
        ToolUse("Bash", {"command": "echo agent-was-here"}),
        ToolUse("Bash", {"command": f"touch {marker}"}),
        Text("done"),
    )
    # When it runs
    stack.deliver(job)
    # Then the matching call ran, the other was denied in dontAsk mode, and nothing was touched
    _, after_echo, after_touch = stack.fake.message_requests
    (echoed,) = after_echo.tool_results()
    assert not echoed["is_error"] and "agent-was-here" in echoed["content"]
    (denied,) = after_touch.tool_results()
    assert denied["is_error"] and "denied" in denied["content"]
    assert not os.path.exists(marker)


def test_the_agent_sees_neither_the_key_nor_aws_credentials_nor_its_ancestors_environment(
    stack: WorkerStack,
) -> None:
    # Given a job allowed Bash, whose agent dumps its environment and then tries to read the
    # environment of every ancestor process
    job = stack.submit(allowed_tools=["Bash"])
    walk = (
        "env; echo ===ANCESTORS===; p=$$; "
        'while [ "$p" -gt 1 ]; do '
        'if out=$(tr "\\0" "\\n" < /proc/$p/environ 2>&1); then echo "pid $p readable"; '
        'echo "$out"; else echo "pid $p denied"; fi; '
        "p=$(awk '{print $4}' /proc/$p/stat); done"
    )
    stack.fake.script(ToolUse("Bash", {"command": walk}), Text("done"))
    # When it runs
    stack.deliver(job)
    # Then the agent's environment holds only a per-job token, no key and no AWS variable
    output = stack.fake.message_requests[1].tool_results()[0]["content"]
    own_env, ancestors = output.split("===ANCESTORS===")
    assert REAL_KEY not in output
    names = {line.split("=", 1)[0] for line in own_env.splitlines() if "=" in line}
    assert not {n for n in names if n.startswith("AWS_")}
    assert "_HANDLER" not in names and "AWS_LAMBDA_FUNCTION_NAME" not in names
    assert re.search(r"^ANTHROPIC_API_KEY=cj-job-\S+$", own_env, re.M)
    assert "AWS_SECRET_ACCESS_KEY" not in output and "_HANDLER=" not in output
    # And the worker process (this test's) was among the ancestors, and unreadable
    assert f"pid {os.getpid()} denied" in ancestors
    # While the upstream received the real key
    assert {r.headers["x-api-key"] for r in stack.fake.message_requests} == {REAL_KEY}


def test_the_real_key_is_scrubbed_from_a_stored_result(stack: WorkerStack) -> None:
    # Given an upstream that (absurdly) echoes the key it received into the answer
    job = stack.submit()
    stack.fake.default = lambda request: Text(
        f"the key is {request.headers.get('x-api-key')} and sk-ant-api03-abcdefghijklmnop"
    )
    # When the job runs
    stack.deliver(job)
    # Then the stored text carries neither
    done = stack.get(job)
    assert done.result is not None and done.result.text is not None
    assert REAL_KEY not in done.result.text and "sk-ant-api03" not in done.result.text
    assert done.result.text.count("[REDACTED]") == 2


def test_structured_output_is_returned_and_validated(stack: WorkerStack) -> None:
    # Given a job with an output schema
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    job = stack.submit(allowed_tools=[], output_schema=schema)
    stack.fake.script(ToolUse("StructuredOutput", {"answer": 42}))
    # When the model answers through the structured output tool
    stack.deliver(job)
    # Then the job carries the structured value
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result.structured == {"answer": 42}


def test_output_that_never_matches_the_schema_fails_the_job(stack: WorkerStack) -> None:
    # Given a model whose structured output is refused and who then just answers in text
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    job = stack.submit(allowed_tools=[], output_schema=schema)
    stack.fake.script(ToolUse("StructuredOutput", {"n": "seven"}), Text("seven"))
    # When it runs
    answer = stack.deliver(job)
    # Then the job failed with output_invalid, and is not retried
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "output_invalid"


def test_a_job_past_its_deadline_ends_timed_out_and_its_cli_is_stopped(
    stack: WorkerStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a job of 10 s and an upstream that takes far longer
    job = stack.submit(timeout_seconds=10)
    stack.fake.script(Text("too late", delay=60))
    # When the worker runs it (with Lambda time to spare: the job's deadline comes first)
    answer = stack.deliver(job)
    # Then the job ended timed_out with a clear error, the message is done
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.TIMED_OUT
    assert done.error is not None and done.error.code == "timed_out"
    assert "deadline of 10 s" in done.error.message
    assert done.usage is not None and done.usage.duration_ms >= 10_000
    # And neither the CLI nor its sandbox is left behind
    assert processes_in(Path(f"/tmp/claude-job-{job.job_id}")) == []
    assert sandboxes_of(job) == []
    # And stopping it on purpose is no error in the logs
    assert _sdk_errors(caplog) == []


@pytest.mark.parametrize(
    ("error", "status_text"),
    [
        (ApiError(500, "api_error", "upstream exploded: ref 7f3a"), "500"),
        (ApiError(529, "overloaded_error", "Overloaded: ref 7f3a"), "529"),
    ],
)
def test_an_upstream_error_fails_the_job_with_the_error_surfaced(
    stack: WorkerStack, error: ApiError, status_text: str
) -> None:
    # Given an upstream that keeps failing
    job = stack.submit()
    stack.fake.default = error
    # When the job runs
    answer = stack.deliver(job)
    # Then it failed (no SQS retry) with the upstream's status and message in its error
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "upstream_error"
    assert status_text in done.error.message and "ref 7f3a" in done.error.message
    assert done.result is not None and done.result.is_error


def test_the_budget_limit_fails_the_job(stack: WorkerStack) -> None:
    # Given a job with a small budget and a model whose first turn costs far more
    job = stack.submit(allowed_tools=["Read"], max_budget_usd=0.05)
    expensive = Usage(input_tokens=1_000_000, output_tokens=100)
    stack.fake.script(ToolUse("Read", {"file_path": "/etc/hostname"}, usage=expensive))
    # When it runs
    answer = stack.deliver(job)
    # Then it failed with budget_exceeded, the cost recorded, and no retry
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "budget_exceeded"
    assert done.usage is not None and done.usage.total_cost_usd > 0.05


def test_the_turn_limit_fails_the_job(stack: WorkerStack) -> None:
    # Given a job allowed one turn and a model that keeps calling tools
    job = stack.submit(allowed_tools=["Read"], max_turns=1)
    stack.fake.script(*[ToolUse("Read", {"file_path": "/etc/hostname"}) for _ in range(3)])
    # When it runs
    answer = stack.deliver(job)
    # Then it failed with max_turns and is not retried
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "max_turns"


def test_redelivery_of_a_finished_job_does_not_call_the_model_again(stack: WorkerStack) -> None:
    # Given a job that already succeeded
    job = stack.submit()
    stack.fake.script(Text("first and only"))
    stack.deliver(job)
    calls = len(stack.fake.message_requests)
    before = stack.get(job)
    # When its message is delivered again
    answer = stack.deliver(job, message_id="msg-dup")
    # Then the message is done, the model was not called, and the job is unchanged
    assert answer == {"batchItemFailures": []}
    assert len(stack.fake.message_requests) == calls
    after = stack.get(job)
    assert after.version == before.version and after.result == before.result


def test_redelivery_of_a_running_job_does_not_call_the_model(stack: WorkerStack) -> None:
    # Given a job that is running (another worker holds it, its answer is slow)
    job = stack.submit()
    stack.fake.script(Text("slow answer", delay=3))
    thread, first_answer = stack.deliver_in_thread(job)
    _wait_for(lambda: stack.get(job).status is JobStatus.RUNNING and stack.fake.requests)
    # When a duplicate of its message arrives meanwhile
    duplicate = stack.deliver(job, message_id="msg-dup")
    # Then the duplicate makes no model call and is handed back (it comes back when the
    # lease ends, in case its holder dies), and the first delivery finishes the job
    assert duplicate == {"batchItemFailures": [{"itemIdentifier": "msg-dup"}]}
    thread.join(timeout=60)
    assert not thread.is_alive() and first_answer == {"batchItemFailures": []}
    assert len(stack.fake.message_requests) == 1
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1


def test_output_over_256_kib_round_trips_through_s3(stack: WorkerStack) -> None:
    # Given a model whose answer is larger than what DynamoDB keeps inline
    text = "".join(f"line {i:06d} ✓ lorem ipsum dolor sit amet\n" for i in range(8000))
    assert len(text.encode()) > 256 * 1024
    job = stack.submit()
    stack.fake.script(Text(text, chunk_chars=8192))
    # When the job runs
    stack.deliver(job)
    # Then the item references an S3 object that holds the full text
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result.text is None and done.result.s3_key
    assert s3_text(done.result.s3_key, stack.provisioned.settings.results_bucket) == text
    # And the status view serves a download URL instead of the text
    view = stack.container.job_service.view(done)
    assert view.result is not None and view.result.text is None
    assert view.result.download_url and done.result.s3_key in view.result.download_url


def _sdk_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("claude_agent_sdk") and r.levelno >= logging.ERROR
    ]


def test_cancelling_a_running_job_stops_it(
    stack: WorkerStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a running job whose model is slow to answer
    job = stack.submit()
    stack.fake.script(Text("never delivered", delay=60))
    thread, answer = stack.deliver_in_thread(job)
    _wait_for(lambda: bool(stack.fake.message_requests))
    # When the caller cancels it
    stack.container.job_service.cancel(stack.tenant, job.job_id)
    # Then the worker stops the CLI and the job ends cancelled, its message done
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert answer == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.CANCELLED
    assert done.error is not None and done.error.code == "cancelled"
    assert processes_in(Path(f"/tmp/claude-job-{job.job_id}")) == []
    assert sandboxes_of(job) == []
    # And the CLI the worker stopped on purpose is no error in the logs (the SDK's reader
    # reports its exit -9 as "Fatal error in message reader")
    assert _sdk_errors(caplog) == []


def test_an_agent_that_kills_its_own_cli_fails_its_job_and_the_fault_is_logged(
    stack: WorkerStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a job whose agent kills the CLI that runs it (its Bash's parent process)
    job = stack.submit(allowed_tools=["Bash"])
    stack.fake.script(ToolUse("Bash", {"command": "kill -9 $PPID; sleep 5"}), Text("unreachable"))
    # When it runs
    answer = stack.deliver(job)
    # Then the job failed with what happened, and the message is done (not retried)
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.FAILED
    assert done.error is not None and "ended without a result" in done.error.message
    assert processes_in(Path(f"/tmp/claude-job-{job.job_id}")) == []
    # And a CLI that died when nobody stopped it is still an error in the logs
    assert any("exit code -9" in line or "-9" in line for line in _sdk_errors(caplog))


def _wait_for(condition: object, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.mark.skipif(os.geteuid() != 0, reason="distinct agent uids need a root worker")
def test_jobs_running_at_once_get_distinct_uids_and_cannot_reach_each_other(
    stack: WorkerStack,
) -> None:
    # Given job B running (its model slow to answer), its sandbox on disk
    job_b = stack.submit()
    stack.fake.script(Text("B done", delay=6))
    thread, answer_b = stack.deliver_in_thread(job_b)
    _wait_for(lambda: bool(stack.fake.message_requests) and bool(sandboxes_of(job_b)))
    (sandbox_b,) = sandboxes_of(job_b)
    uid_b = (sandbox_b / "work").stat().st_uid
    # When job A, run by the same worker process meanwhile, looks into B's workspace
    job_a = stack.submit(allowed_tools=["Bash"])
    stack.fake.script(
        ToolUse("Bash", {"command": f"id -u; ls {sandbox_b}/work {sandbox_b}/home 2>&1"}),
        Text("A done"),
    )
    stack.deliver(job_a)
    # Then A ran under another unprivileged uid, and B's directories were closed to it
    (result,) = stack.fake.message_requests[-1].tool_results()
    uid_a = int(next(w for w in result["content"].split() if w.isdigit() and len(w) > 2))
    assert uid_a not in (0, uid_b)
    assert uid_b != 0
    assert result["content"].count("Permission denied") == 2
    # And both jobs finished normally
    thread.join(timeout=60)
    assert answer_b == {"batchItemFailures": []}
    assert stack.get(job_a).status is JobStatus.SUCCEEDED
    assert stack.get(job_b).status is JobStatus.SUCCEEDED


def test_output_that_cannot_be_kept_fails_the_job_and_the_model_is_called_once(
    stack: WorkerStack,
) -> None:
    # Given a model whose answer must go to the results bucket, and a document store that
    # refuses every write (the session store, in the same bucket, still works)
    from claude_jobs.documents import JobDocuments

    class Refusing:
        def __init__(self, inner: object) -> None:
            self._inner = inner

        def put(self, *args: object, **kwargs: object) -> str:
            raise ConnectionError("the results bucket is unreachable")

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    job = stack.submit()
    stack.fake.script(Text("y" * 5000))
    documents = stack.container.job_documents
    stack.container.__dict__["job_documents"] = JobDocuments(Refusing(documents.store))  # type: ignore[arg-type]
    # When the job runs, and its message is delivered again
    first = stack.deliver(job)
    again = stack.deliver(job, message_id="msg-2")
    # Then the job ended failed (output_unstorable) at once, with nothing to retry
    assert first == again == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "output_unstorable"
    # And the model was called exactly once
    assert len(stack.fake.requests) == 1


#: What the agent's tool sees of its own credentials.
STATUS_LINES = "grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb):' /proc/self/status"


@pytest.mark.skipif(os.geteuid() != 0, reason="the user switch happens only in a root worker")
@pytest.mark.parametrize("warm_start", [False, True], ids=["cold", "warm-start"])
def test_a_root_worker_hands_the_agent_an_unprivileged_user_and_nothing_else(
    stack: WorkerStack, warm_stack: WorkerStack, warm_start: bool
) -> None:
    worker = warm_stack if warm_start else stack
    tools = ["Bash"]
    worker.deliver(worker.submit("First.", allowed_tools=tools))  # warm start: the CLI is ready
    job = worker.submit("Who am I?", allowed_tools=tools)
    before = len(worker.fake.message_requests)
    worker.fake.script(ToolUse("Bash", {"command": STATUS_LINES}), Text("done"))
    worker.deliver(job)
    assert worker.get(job).status is JobStatus.SUCCEEDED
    status = str(worker.fake.message_requests[before + 1].tool_results()[0]["content"])
    lines = [line for line in status.splitlines() if ":" in line]
    fields = {line.split(":")[0]: line.split(":", 1)[1].split() for line in lines}
    # Real, effective, saved and filesystem ids: one unprivileged uid and gid, no groups
    (uid,) = set(fields["Uid"])
    (gid,) = set(fields["Gid"])
    assert int(uid) != 0 and int(gid) != 0
    assert fields["Groups"] == []
    # And no capability at all
    for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(fields[name][0], 16) == 0, status

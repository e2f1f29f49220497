"""Infrastructure faults are retried through SQS, a poison job ends after its attempt cap, and a
claim whose lease expired (a worker that died) is taken over."""

from __future__ import annotations

import time

import boto3
import pytest

from claude_jobs.models import JobStatus
from claude_jobs.ports import Transition
from claude_jobs.worker import processor
from claude_jobs_tools.local.fake_anthropic import RecordedRequest, Reply, Text, ToolUse, Usage
from tests.worker.conftest import LambdaContext, WorkerStack, sqs_event


def _lose_the_key(stack: WorkerStack) -> None:
    boto3.client("secretsmanager").delete_secret(
        SecretId=stack.provisioned.settings.anthropic_secret_id, ForceDeleteWithoutRecovery=True
    )


def test_an_unreadable_key_releases_the_job_for_retry_then_fails_it_after_the_cap(
    stack: WorkerStack,
) -> None:
    # Given a queued job and a Secrets Manager that no longer has the key
    job = stack.submit()
    _lose_the_key(stack)
    cap = stack.provisioned.settings.max_attempts
    for attempt in range(1, cap):
        # When its message is delivered
        answer = stack.deliver(job, message_id=f"m{attempt}")
        # Then the message is reported failed (SQS retries it) and the job is queued again
        assert answer == {"batchItemFailures": [{"itemIdentifier": f"m{attempt}"}]}
        queued = stack.get(job)
        assert queued.status is JobStatus.QUEUED
        assert queued.attempts == attempt and queued.lease_until is None
    # When the last allowed attempt hits the same fault
    answer = stack.deliver(job, message_id="last")
    # Then the job fails for good, saying why, and the message is done
    assert answer == {"batchItemFailures": []}
    failed = stack.get(job)
    assert failed.status is JobStatus.FAILED and failed.attempts == cap
    assert failed.error is not None and failed.error.code == "attempts_exhausted"
    assert "KeyUnavailableError" in failed.error.message
    assert failed.prompt is None
    # And the model was never called
    assert stack.fake.requests == []


def test_a_message_that_hit_a_fault_comes_back_after_a_backoff_not_the_queue_timeout(
    stack: WorkerStack,
) -> None:
    # Given a queued job whose message waits on the real jobs queue (visibility timeout 90 min)
    job = stack.submit()
    sqs = boto3.client("sqs")
    url = stack.provisioned.settings.jobs_queue_url
    (message,) = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    # And a Secrets Manager that lost the key
    _lose_the_key(stack)
    # When the worker gets that message as the SQS event source delivers it
    event = sqs_event(job, message["MessageId"])
    record = event["Records"][0]
    record["receiptHandle"] = message["ReceiptHandle"]
    record["eventSourceARN"] = stack.provisioned.queue_arns["JobsQueue"]
    answer = stack.function.handler(event, LambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    # Then the message comes back after the retry backoff (1 s here), not after 90 minutes
    again = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=10)
    assert [m["MessageId"] for m in again.get("Messages", [])] == [message["MessageId"]]
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_a_job_whose_worker_died_on_its_last_attempt_fails_without_a_run(
    stack: WorkerStack,
) -> None:
    # Given a job left running by its last allowed attempt, its lease expired
    job = stack.submit()
    cap = stack.provisioned.settings.max_attempts
    stack.repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.RUNNING,
            set_fields={"lease_until": int(time.time()) - 5},
            add_attempts=cap,
        )
    )
    # When its message comes back
    answer = stack.deliver(job)
    # Then it ends failed (attempts_exhausted) and the model is not called
    assert answer == {"batchItemFailures": []}
    failed = stack.get(job)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == "attempts_exhausted"
    assert stack.fake.requests == []


@pytest.mark.cli
def test_a_job_whose_worker_died_is_taken_over_once_its_lease_expired(
    stack: WorkerStack,
) -> None:
    # Given a job left running by a worker that died, its lease expired
    job = stack.submit()
    stack.repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.RUNNING,
            set_fields={"lease_until": int(time.time()) - 5},
            add_attempts=1,
        )
    )
    stack.fake.script(Text("second time lucky"))
    # When its message comes back
    answer = stack.deliver(job)
    # Then this worker claims it again and runs it to the end
    assert answer == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
    assert done.result is not None and done.result.text == "second time lucky"


def test_a_malformed_message_or_an_unknown_job_is_dropped(stack: WorkerStack) -> None:
    # Given a message that is not JSON, and one naming no job
    job = stack.submit()
    broken = sqs_event(job, "broken")
    broken["Records"][0]["body"] = "not json"
    unknown = sqs_event(job, "unknown")
    unknown["Records"][0]["body"] = '{"job_id":"no-such-job","tenant_id":"acme"}'
    # When they are delivered
    answers = [stack.function.handler(e, LambdaContext()) for e in (broken, unknown)]
    # Then both are done (nothing to retry) and nothing ran
    assert answers == [{"batchItemFailures": []}] * 2
    assert stack.fake.requests == []
    assert stack.get(job).status is JobStatus.QUEUED


def test_a_cancel_requested_before_a_worker_took_over_ends_the_job_without_a_run(
    stack: WorkerStack,
) -> None:
    # Given a job left running (lease expired) whose cancel was requested meanwhile
    job = stack.submit()
    stack.repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.RUNNING,
            set_fields={"lease_until": int(time.time()) - 5, "cancel_requested": True},
            add_attempts=1,
        )
    )
    # When its message comes back
    stack.deliver(job)
    # Then it ends cancelled without calling the model
    done = stack.get(job)
    assert done.status is JobStatus.CANCELLED
    assert stack.fake.requests == []


def test_a_message_for_a_job_another_worker_holds_comes_back_when_the_lease_ends(
    stack: WorkerStack,
) -> None:
    # Given a job running under another worker's live lease (3 s left), and its message
    # delivered to this worker too (SQS delivers at least once)
    job = stack.submit()
    stack.repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.RUNNING,
            set_fields={"lease_until": int(time.time()) + 3},
            add_attempts=1,
        )
    )
    sqs = boto3.client("sqs")
    url = stack.provisioned.settings.jobs_queue_url
    (message,) = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    event = sqs_event(job, message["MessageId"])
    record = event["Records"][0]
    record["receiptHandle"] = message["ReceiptHandle"]
    record["eventSourceARN"] = stack.provisioned.queue_arns["JobsQueue"]
    # When this worker gets it
    answer = stack.function.handler(event, LambdaContext())
    # Then nothing runs and the message is not deleted: it is reported failed, and it comes
    # back once the lease has lapsed (not after the queue's 90 minutes), so that it takes the
    # job over if the lease holder died
    assert answer == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert stack.fake.requests == []
    again = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=15)
    assert [m["MessageId"] for m in again.get("Messages", [])] == [message["MessageId"]]


class _WorkerDied(BaseException):
    """The worker's process ends here: nothing after it runs (an OOM kill, a SIGKILL)."""


#: One model turn of about $0.03 (Sonnet 4.5: 1,000 input tokens at $3/M, 1,800 output at $15/M).
_TURN = Usage(input_tokens=1000, output_tokens=1800)
_TURN_USD = 1000 * 3e-6 + 1800 * 15e-6


def _two_step_model(request: RecordedRequest) -> Reply:
    """A model that decides from the conversation it receives: a Bash step first, then, once
    it sees that step's output, its answer; each turn about $0.03."""
    if any("step-done" in r["content"] for r in request.tool_results()):
        return Text("finished", usage=_TURN)
    return ToolUse("Bash", {"command": "echo step-done"}, usage=_TURN)


@pytest.mark.cli
def test_a_worker_that_dies_mid_job_leaves_what_it_spent_to_the_next_attempt(
    stack: WorkerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a $0.05 job whose first attempt spends two $0.03 turns (the second one past the
    # budget, as one call may go), and a worker that dies before it records anything of it
    job = stack.submit(allowed_tools=["Bash"], max_budget_usd=0.05)
    stack.fake.default = _two_step_model

    def die(*args: object, **kwargs: object) -> None:
        raise _WorkerDied

    monkeypatch.setattr(processor, "record", die)
    with pytest.raises(_WorkerDied):
        stack.deliver(job)
    monkeypatch.undo()
    # Then the job still holds what that attempt spent (journaled around each call)
    left = stack.get(job)
    assert left.status is JobStatus.RUNNING and left.usage is None
    assert left.unrecorded_usd == pytest.approx(2 * _TURN_USD)
    assert len(stack.fake.message_requests) == 2
    # When its lease has expired and its message comes back to a fresh attempt
    stack.repo.update(
        job.job_id,
        set_fields={"lease_until": int(time.time()) - 5},
        expected_status=[JobStatus.RUNNING],
    )
    answer = stack.deliver(job)
    # Then that attempt had nothing left: its first call was refused (a fresh $0.05 would
    # have paid for both steps again), and the job failed over its budget with the first
    # attempt's cost on record
    assert answer == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.attempts == 2
    assert len(stack.fake.message_requests) == 2
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "budget_exceeded"
    assert done.usage is not None
    assert done.usage.total_cost_usd == pytest.approx(2 * _TURN_USD)
    assert done.unrecorded_usd is None

"""The trigger function end to end against moto: S3 notifications and EventBridge events become
jobs (or dead letters with their reason), idempotently."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from claude_jobs.errors import TenantLimitError
from claude_jobs.models import JobStatus
from claude_jobs.settings import Settings
from claude_jobs.triggers.function import TriggerFunction
from claude_jobs.triggers.trigger_service import TEXT_INLINE_BYTES
from claude_jobs.wiring import Container
from tests.events import load_event
from tests.lambda_context import lambda_context

from .conftest import INBOX, SHIPPED_CONFIG, Inspector

NOTES = "Agenda: ship the trigger. Owner: {{key}} is not a placeholder here.\n"


def put_inbox(key: str, body: bytes) -> None:
    boto3.client("s3").put_object(Bucket=INBOX, Key=key, Body=body)


def s3_event(key: str = "inbox/meeting+notes.txt") -> dict[str, Any]:
    event = load_event("s3_object_created.json")
    event["Records"][0]["s3"]["object"]["key"] = key
    return event


def _with(event: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The S3 event with the field at `path` (in its first record) set to `value`."""
    node = event["Records"][0]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return event


def test_s3_object_becomes_one_job_with_the_rendered_prompt(
    trigger: TriggerFunction, inspect: Inspector
) -> None:
    # Given an object under inbox/ (its key URL-encoded in the notification, as S3 sends it)
    put_inbox("inbox/meeting notes.txt", NOTES.encode())
    # When the S3 notification reaches the trigger function
    result = trigger.handler(load_event("s3_object_created.json"), lambda_context("trigger"))
    # Then one job is queued for the configured tenant, with the configured options
    (outcome,) = result["outcomes"]
    assert outcome["status"] == "created" and outcome["trigger"] == "inbox-review"
    (job,) = inspect.jobs("default")
    assert job.job_id == outcome["job_id"]
    assert job.status is JobStatus.QUEUED and job.source == "s3"
    assert job.options.max_turns == 10
    assert job.options.allowed_tools == ["Read", "Glob", "Grep"]
    assert inspect.queued_messages() == 1
    # And the prompt is the template rendered with the object's details and text, verbatim
    # (the text's own braces are not expanded)
    assert job.prompt is not None
    assert "`s3://test-inbox/inbox/meeting notes.txt`" in job.prompt
    assert f"({len(NOTES.encode())} bytes)" in job.prompt
    assert "`meeting_notes.txt`" in job.prompt
    assert NOTES in job.prompt
    # And the object is recorded as the job's input, and the job says where it came from
    assert [(i.bucket, i.key, i.size) for i in job.inputs] == [
        (INBOX, "inbox/meeting notes.txt", len(NOTES.encode()))
    ]
    assert job.metadata == {
        "pipeline": "inbox",
        "trigger": "inbox-review",
        "s3_bucket": INBOX,
        "s3_key": "inbox/meeting notes.txt",
    }


def test_the_same_notification_twice_makes_one_job(
    trigger: TriggerFunction, inspect: Inspector
) -> None:
    # Given an object and its notification, delivered twice (S3 delivers at least once)
    put_inbox("inbox/meeting notes.txt", NOTES.encode())
    event = load_event("s3_object_created.json")
    # When both deliveries are handled
    first = trigger.handler(event, lambda_context("trigger"))["outcomes"][0]
    second = trigger.handler(copy.deepcopy(event), lambda_context("trigger"))["outcomes"][0]
    # Then there is one job, and the second delivery names it
    assert first["status"] == "created"
    assert second == {**first, "status": "duplicate"}
    assert len(inspect.jobs()) == 1
    assert inspect.queued_messages() == 1


def test_a_new_version_of_the_object_is_a_new_job(
    trigger: TriggerFunction, inspect: Inspector
) -> None:
    # Given an object that was handled, then overwritten (a new ETag)
    put_inbox("inbox/meeting notes.txt", b"v1")
    trigger.handler(load_event("s3_object_created.json"), lambda_context("trigger"))
    put_inbox("inbox/meeting notes.txt", b"v2")
    event = load_event("s3_object_created.json")
    event["Records"][0]["s3"]["object"]["eTag"] = "fedcba9876543210fedcba9876543210"
    # When its notification arrives
    outcome = trigger.handler(event, lambda_context("trigger"))["outcomes"][0]
    # Then it makes a second job, with the new content
    assert outcome["status"] == "created"
    jobs = inspect.jobs()
    assert len(jobs) == 2
    assert "v2" in (jobs[0].prompt or "")


def test_a_large_object_is_left_in_the_workspace_not_quoted(
    trigger: TriggerFunction, inspect: Inspector
) -> None:
    # Given an object larger than what a prompt quotes
    put_inbox("inbox/big.log", b"x" * (TEXT_INLINE_BYTES + 1))
    # When its notification is handled
    trigger.handler(s3_event("inbox/big.log"), lambda_context("trigger"))
    # Then the prompt points at the file instead of quoting it
    (job,) = inspect.jobs()
    assert job.prompt is not None
    assert "xxxx" not in job.prompt
    assert "it is the file `big.log` in your working directory" in job.prompt
    assert job.inputs[0].size == TEXT_INLINE_BYTES + 1


def test_a_binary_object_is_not_quoted(trigger: TriggerFunction, inspect: Inspector) -> None:
    put_inbox("inbox/photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    trigger.handler(s3_event("inbox/photo.png"), lambda_context("trigger"))
    (job,) = inspect.jobs()
    assert "it is the file `photo.png`" in (job.prompt or "")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        pytest.param(s3_event("elsewhere/notes.txt"), "no trigger matches", id="no-trigger"),
        pytest.param(s3_event("inbox/never-uploaded.txt"), "is not there", id="missing-object"),
        pytest.param({"hello": "world"}, "not an S3 notification or an event", id="bad-shape"),
        pytest.param(
            {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]},
            "not an S3 event record",
            id="bad-record",
        ),
        pytest.param(
            {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": 7}]},
            "not an S3 event record",
            id="s3-not-an-object",
        ),
        pytest.param(
            _with(s3_event(), ("s3", "object"), None), "not an S3 event record", id="no-object"
        ),
        pytest.param(
            _with(s3_event(), ("s3", "object", "key"), ""), "no bucket and object key", id="no-key"
        ),
        pytest.param(
            _with(s3_event(), ("eventTime",), "yesterday"),
            "eventTime",
            id="bad-event-time",
        ),
        pytest.param(
            _with(s3_event(), ("s3", "bucket", "ownerIdentity"), None),
            "ownerIdentity",
            id="no-bucket-owner",
        ),
    ],
)
def test_a_bad_s3_event_goes_to_the_dlq_with_its_reason(
    trigger: TriggerFunction,
    inspect: Inspector,
    event: dict[str, Any],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an event that cannot become a job
    # When the trigger function handles it
    result = trigger.handler(event, lambda_context("trigger"))
    # Then it does not raise, makes no job, and dead-letters the event with the reason, logged
    assert [o["status"] for o in result["outcomes"]] == ["rejected"]
    assert inspect.jobs() == []
    (letter,) = inspect.dead_letters()
    assert reason in letter["reason"]
    assert letter["attributes"]["reason"] == letter["reason"]
    expected = event["Records"][0] if "Records" in event else event
    assert letter["event"] == expected
    assert reason in caplog.text


def test_one_bad_record_does_not_hold_up_the_good_one(
    trigger: TriggerFunction, inspect: Inspector
) -> None:
    # Given a notification with a good record and one for an object no trigger wants
    put_inbox("inbox/meeting notes.txt", NOTES.encode())
    event = load_event("s3_object_created.json")
    event["Records"].append(s3_event("elsewhere/x.txt")["Records"][0])
    # When it is handled
    outcomes = trigger.handler(event, lambda_context("trigger"))["outcomes"]
    # Then the good record makes its job and the other is dead-lettered
    assert [o["status"] for o in outcomes] == ["created", "rejected"]
    assert len(inspect.jobs()) == 1
    assert len(inspect.dead_letters()) == 1


def test_an_s3_test_event_is_ignored(trigger: TriggerFunction, inspect: Inspector) -> None:
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": INBOX}
    assert trigger.handler(event, lambda_context("trigger"))["outcomes"][0]["status"] == "ignored"
    assert inspect.jobs() == [] and inspect.dead_letters() == []


def test_an_infrastructure_fault_raises_instead_of_dead_lettering(
    trigger: TriggerFunction, inspect: Inspector
) -> None:
    # Given a deployment whose jobs table is unreachable (here: misnamed)
    put_inbox("inbox/meeting notes.txt", NOTES.encode())
    broken = inspect.settings.model_copy(update={"jobs_table": "no-such-table"})
    trigger.container = Container(broken)
    # When a good event arrives
    # Then the invocation fails (Lambda retries it), and nothing is dead-lettered
    with pytest.raises(ClientError, match="ResourceNotFound"):
        trigger.handler(load_event("s3_object_created.json"), lambda_context("trigger"))
    assert inspect.dead_letters() == []


# ---------------------------------------------------------------- EventBridge


def test_an_event_with_job_options_makes_a_job_with_them(
    trigger: TriggerFunction, inspect: Inspector
) -> None:
    # Given an event for the run-task trigger, whose detail.job sets options
    event = load_event("eventbridge_run_task.json")
    # When it is handled
    (outcome,) = trigger.handler(event, lambda_context("trigger"))["outcomes"]
    # Then a job runs the task with the event's options over the trigger's
    assert outcome["status"] == "created" and outcome["trigger"] == "run-task"
    (job,) = inspect.jobs()
    assert job.source == "events"
    assert job.options.max_turns == 4
    assert job.options.timeout_seconds == 120
    assert job.options.allowed_tools == ["Read"]
    assert job.prompt is not None
    assert job.prompt.startswith("List three prime numbers larger than 100.")
    assert event["id"] in job.prompt and "claude-jobs.trigger" in job.prompt
    assert job.metadata["event_id"] == event["id"]
    # And the same event again (EventBridge delivers at least once) makes no second job
    again = trigger.handler(load_event("eventbridge_run_task.json"), lambda_context("trigger"))[
        "outcomes"
    ][0]
    assert again["status"] == "duplicate" and again["job_id"] == job.job_id
    assert len(inspect.jobs()) == 1


def test_a_scheduled_event_makes_a_job(trigger: TriggerFunction, inspect: Inspector) -> None:
    # Given the event of a schedule rule named like the nightly-digest trigger's rule
    event = load_event("eventbridge_scheduled.json")
    # When it is handled
    (outcome,) = trigger.handler(event, lambda_context("trigger"))["outcomes"]
    # Then a job with the trigger's options runs its template
    assert outcome["status"] == "created" and outcome["trigger"] == "nightly-digest"
    (job,) = inspect.jobs()
    assert job.options.allowed_tools == [] and job.options.max_turns == 3
    assert job.prompt is not None and job.prompt.startswith("It is 2026-11-23T03:00:00Z.")


def with_detail(**changes: Any) -> dict[str, Any]:
    event = load_event("eventbridge_run_task.json")
    event["detail"].update(changes)
    return event


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        pytest.param(with_detail(job={"max_turns": 1000}), "max_turns", id="options-out-of-bounds"),
        pytest.param(
            with_detail(job={"max_budget_usd": 1000}), "deployment cap", id="over-budget-cap"
        ),
        pytest.param(
            with_detail(job={"allowed_tools": ["Bash"]}),
            "does not let an event ask for tool(s): Bash",
            id="tool-not-allowed-by-trigger",
        ),
        pytest.param(
            with_detail(job={"allowed_tools": ["Read"], "sneaky": 1}),
            "unknown option(s): sneaky",
            id="unknown-option",
        ),
        pytest.param(with_detail(job="everything"), "must be an object", id="job-not-object"),
        pytest.param(
            {**with_detail(), "detail": {"job": {}}}, "has no field 'task'", id="missing-field"
        ),
        pytest.param(
            {**with_detail(), "source": "someone.else"}, "no trigger matches", id="no-trigger"
        ),
        pytest.param(
            {**with_detail(), "detail": "a string"}, "not an EventBridge event", id="bad-detail"
        ),
        pytest.param(
            {**with_detail(), "time": "teatime"}, "not an EventBridge event: time", id="bad-time"
        ),
        pytest.param(
            {k: v for k, v in with_detail().items() if k != "account"},
            "not an EventBridge event: account",
            id="no-account",
        ),
        pytest.param(
            {
                **load_event("eventbridge_scheduled.json"),
                "resources": ["arn:aws:events:us-east-1:123456789012:rule/other-schedule"],
            },
            "no trigger matches",
            id="unknown-schedule",
        ),
    ],
)
def test_a_bad_event_goes_to_the_dlq_with_its_reason(
    trigger: TriggerFunction, inspect: Inspector, event: dict[str, Any], reason: str
) -> None:
    # Given an event that cannot become a job
    # When it is handled
    (outcome,) = trigger.handler(event, lambda_context("trigger"))["outcomes"]
    # Then no job is made and the event is dead-lettered with the reason
    assert outcome["status"] == "rejected"
    assert inspect.jobs() == []
    (letter,) = inspect.dead_letters()
    assert reason in letter["reason"], letter
    assert letter["kind"] == "events"
    assert letter["event"] == event


def test_a_trigger_may_forbid_event_options(trigger: TriggerFunction, inspect: Inspector) -> None:
    # Given the schedule trigger, which lets events set no options
    event = load_event("eventbridge_scheduled.json")
    event["detail"] = {"job": {"max_turns": 2}}
    # When such an event tries to
    (outcome,) = trigger.handler(event, lambda_context("trigger"))["outcomes"]
    # Then it is refused
    assert outcome["status"] == "rejected"
    assert "does not let an event set: max_turns" in (outcome["reason"] or "")
    assert inspect.jobs() == []


def test_a_trigger_event_at_the_tenants_pending_cap_still_becomes_a_job(
    settings: Settings, inspect: Inspector
) -> None:
    # Given a deployment whose tenants may have one pending job, and the trigger's tenant
    # already at that cap (a job submitted as a caller would)
    capped = settings.model_copy(update={"tenant_max_pending": 1})
    container = Container(capped)
    request = container.job_service.parse_request({"prompt": "already pending"})
    container.job_service.submit("default", request)
    with pytest.raises(TenantLimitError):  # a caller's next job is refused (429)
        container.job_service.submit("default", request)
    function = TriggerFunction(container, default_config=SHIPPED_CONFIG)
    # When an S3 notification for that tenant arrives
    put_inbox("inbox/meeting notes.txt", b"notes")
    outcome = function.handler(s3_event(), lambda_context("trigger"))["outcomes"][0]
    # Then it is not refused, retried or dead-lettered: its job is queued, counted pending,
    # and waits for the tenant's running share like any other
    assert outcome["status"] == "created"
    assert len(inspect.jobs()) == 2
    assert inspect.dead_letters() == []
    assert container.job_repository.tenant_usage("default").pending == 2

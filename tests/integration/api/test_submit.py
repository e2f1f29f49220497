"""POST /v1/jobs and POST /v1/jobs/{job_id}/cancel through the submit function's handler."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from claude_jobs.job_service import JobService
from claude_jobs.models import JobStatus
from claude_jobs.ports import Transition
from claude_jobs.settings import Settings
from claude_jobs.wiring import Container
from claude_jobs_tools.provision import Provisioned
from tests.events import load_event

from .conftest import OTHER_TENANT, TENANT, Api, as_tenant, with_body

PROMPT = {"prompt": "Summarise README.md in three bullet points."}


def queued_messages(provisioned: Provisioned) -> list[dict[str, Any]]:
    response = boto3.client("sqs").receive_message(
        QueueUrl=provisioned.settings.jobs_queue_url, MaxNumberOfMessages=10
    )
    return [json.loads(m["Body"]) for m in response.get("Messages", [])]


def test_submit_answers_202_with_location_and_queues_the_job(
    api: Api, provisioned: Provisioned
) -> None:
    # Given the sample submit event (authorizer context for tenant-a, Idempotency-Key set)
    # When the submit function handles it
    answer = api.call(api.submit, load_event("apigw_submit_job.json"))
    # Then it answers 202 with a Location and the queued job
    assert answer.status == 202
    body = answer.json
    assert body["status"] == "queued"
    assert answer.headers["Location"] == f"/v1/jobs/{body['job_id']}"
    assert body["links"] == {"self": f"/v1/jobs/{body['job_id']}"}
    assert body["created_at"]
    # And the job is stored for its tenant with the request's options, and one message names it
    job = api.container.job_service.get(TENANT, body["job_id"])
    assert job.status is JobStatus.QUEUED
    assert job.options.allowed_tools == ["Read", "Glob"]
    assert job.options.max_turns == 5
    assert job.metadata == {"ticket": "OPS-42"}
    assert queued_messages(provisioned) == [{"job_id": body["job_id"], "tenant_id": TENANT}]


def test_same_idempotency_key_and_body_returns_the_first_job(
    api: Api, provisioned: Provisioned
) -> None:
    # Given a job submitted with an Idempotency-Key
    first = api.submit_job(PROMPT, Idempotency_Key="retry-me")
    # When the same request is sent again
    again = api.submit_job(PROMPT, Idempotency_Key="retry-me")
    # Then it answers 202 with the first job, and no second job is queued
    assert first.status == again.status == 202
    assert again.json["job_id"] == first.json["job_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert len(queued_messages(provisioned)) == 1
    assert len(api.container.job_service.list(TENANT).items) == 1


def test_same_idempotency_key_with_another_body_is_409(api: Api) -> None:
    api.submit_job(PROMPT, Idempotency_Key="k-1")
    answer = api.submit_job({"prompt": "something else"}, Idempotency_Key="k-1")
    problem = answer.is_problem(409)
    assert problem["type"].endswith("idempotency_conflict")
    assert len(api.container.job_service.list(TENANT).items) == 1


def test_idempotency_keys_are_per_tenant(api: Api) -> None:
    mine = api.submit_job(PROMPT, Idempotency_Key="shared")
    theirs = api.submit_job(PROMPT, tenant=OTHER_TENANT, Idempotency_Key="shared")
    assert theirs.status == 202
    assert theirs.json["job_id"] != mine.json["job_id"]


def test_idempotency_key_over_128_chars_is_422(api: Api) -> None:
    problem = api.submit_job(PROMPT, Idempotency_Key="k" * 129).is_problem(422)
    assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"prompt": "hi", "colour": "blue"}, ["body", "colour"]),
        ({"prompt": "hi", "allowed_tools": ["Read", "WebFetch"]}, ["body", "allowed_tools", 1]),
        ({"prompt": "hi", "max_turns": 0}, ["body", "max_turns"]),
        ({"prompt": "hi", "max_turns": "many"}, ["body", "max_turns"]),
        ({"prompt": "hi", "timeout_seconds": 14_401}, ["body", "timeout_seconds"]),
        ({"prompt": "hi", "max_budget_usd": 1000}, ["body", "max_budget_usd"]),
        ({"prompt": "hi", "metadata": {"k": 1}}, ["body", "metadata", "k"]),
        ({"prompt": "hi", "output_schema": {"type": "nonsense"}}, ["body", "output_schema"]),
        ({"prompt": ""}, ["body", "prompt"]),
        ({}, ["body", "prompt"]),
        ([PROMPT], ["body"]),
    ],
)
def test_invalid_requests_are_422_with_the_field(api: Api, body: Any, loc: list[Any]) -> None:
    # Given a body that breaks one rule of the contract
    # When it is submitted
    problem = api.submit_job(body).is_problem(422)
    # Then the problem names the offending field, and nothing was stored
    assert loc in [e["loc"] for e in problem["errors"]], problem
    assert all(e["msg"] for e in problem["errors"])
    assert api.container.job_service.list(TENANT).items == []


def test_every_problem_of_a_request_is_reported_at_once(api: Api) -> None:
    # Given a body with an unknown field, a bound broken, a tool the deployment does not permit
    # and a budget over its cap
    body = {
        "prompt": "hi",
        "colour": "blue",
        "max_turns": 0,
        "allowed_tools": ["Read", "WebFetch"],
        "max_budget_usd": 1e6,
    }
    # When it is submitted
    problem = api.submit_job(body).is_problem(422)
    # Then one 422 names all four fields
    assert sorted(map(tuple, (e["loc"] for e in problem["errors"]))) == sorted(
        [
            ("body", "colour"),
            ("body", "max_turns"),
            ("body", "allowed_tools", 1),
            ("body", "max_budget_usd"),
        ]
    )


@pytest.mark.parametrize(
    ("raw", "base64_encoded"),
    [
        ("not json", False),
        ("{", False),
        ('{"prompt": NaN}', False),
        ('{"prompt": "hi", "max_turns": 1' + "0" * 5000 + "}", False),
        ('{"prompt": "hi", "max_budget_usd": 1e999}', False),
        ('{"prompt": "hi", "output_schema": {"type": "number", "maximum": 1e999}}', False),
        ('{"prompt": "\\ud800"}', False),
        ("[" * 5000 + "]" * 5000, False),
        ('{"prompt": "hi", "output_schema": ' + '{"items": ' * 200 + "{}" + "}" * 201, False),
        (b'{"prompt": "caf\xe9"}', True),  # Latin-1, not UTF-8
        (b"\x00\xff\xfe garbage", True),
        ('"just a string"', False),
        ("null", False),
        ("12345678901234567890", False),
        ("", False),
    ],
)
def test_nasty_bodies_are_4xx_problems_never_5xx(
    api: Api, raw: str | bytes, base64_encoded: bool
) -> None:
    event = with_body(
        as_tenant(load_event("apigw_submit_job.json"), TENANT), raw, base64_encoded=base64_encoded
    )
    answer = api.call(api.submit, event)
    assert 400 <= answer.status < 500, answer.text
    answer.is_problem(answer.status)


def test_body_that_is_not_base64_is_422(api: Api) -> None:
    event = as_tenant(load_event("apigw_submit_job.json"), TENANT)
    event["body"], event["isBase64Encoded"] = "***not base64***", True
    api.call(api.submit, event).is_problem(422)


def test_base64_encoded_json_body_is_accepted(api: Api) -> None:
    event = with_body(
        as_tenant(load_event("apigw_submit_job.json"), TENANT),
        json.dumps(PROMPT),
        base64_encoded=True,
    )
    assert api.call(api.submit, event).status == 202


def test_body_over_256_kib_is_413(api: Api) -> None:
    # Given a body one byte over 256 KiB (a prompt is at most 100,000 chars, but size comes first)
    padding = 256 * 1024 - len(json.dumps({"prompt": ""})) + 1
    answer = api.submit_job({"prompt": "x" * padding})
    problem = answer.is_problem(413)
    assert "256 KiB" in problem["detail"] or "262144" in problem["detail"]


def test_base64_body_is_measured_decoded(api: Api) -> None:
    # 200 KiB decoded is fine in size (base64 makes it ~267 KiB on the wire) ...
    small = json.dumps({"prompt": "hi", "metadata": {"pad": "x"}, "system_prompt": "y" * 19_000})
    event = with_body(
        as_tenant(load_event("apigw_submit_job.json"), TENANT), small, base64_encoded=True
    )
    assert api.call(api.submit, event).status == 202
    # ... while 257 KiB decoded is too large
    big = json.dumps({"prompt": "z" * (257 * 1024)})
    event = with_body(
        as_tenant(load_event("apigw_submit_job.json"), TENANT), big, base64_encoded=True
    )
    api.call(api.submit, event).is_problem(413)


def test_multibyte_body_is_measured_in_bytes(api: Api) -> None:
    # 90,000 four-byte characters: a valid prompt length, but 360 KB of UTF-8
    answer = api.submit_job({"prompt": "\U0001f600" * 90_000}, Content_Type="application/json")
    answer.is_problem(413)


def test_without_authorizer_context_is_401(api: Api) -> None:
    answer = api.submit_job(PROMPT, tenant=None)
    answer.is_problem(401)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_dispatch_failure_is_503_and_the_job_fails_instead_of_staying_queued(
    provisioned: Provisioned,
) -> None:
    # Given a deployment whose queue is gone (every SendMessage fails)
    settings = provisioned.settings.model_copy(
        update={"jobs_queue_url": provisioned.settings.jobs_queue_url + "-missing"}
    )
    broken = Api(Container(settings))
    # When a job is submitted with an Idempotency-Key
    answer = broken.submit_job(PROMPT, Idempotency_Key="k-dispatch")
    # Then the caller gets a 503 problem with Retry-After
    problem = answer.is_problem(503)
    assert problem["type"].endswith("dispatch_failed")
    assert answer.headers["Retry-After"]
    # And the job is failed with dispatch_failed, not left queued
    (job,) = broken.container.job_service.list(TENANT).items
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "dispatch_failed"
    # And once the queue works again, a retry with the same key makes a fresh job
    healthy = Api(Container(provisioned.settings))
    retry = healthy.submit_job(PROMPT, Idempotency_Key="k-dispatch")
    assert retry.status == 202 and retry.json["job_id"] != job.job_id


class ThrottledRepository:
    """A job repository whose table is throttling every write, as DynamoDB does under load."""

    def create(self, job: object, claim: object = None, **limits: object) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
            "PutItem",
        )


def test_throttled_storage_is_429_with_retry_after(provisioned: Provisioned) -> None:
    container = Container(provisioned.settings)
    container.job_service = JobService(
        ThrottledRepository(),  # type: ignore[arg-type]
        container.job_service.context.queue,
        provisioned.settings,
    )
    answer = Api(container).submit_job(PROMPT)
    problem = answer.is_problem(429)
    assert problem["type"].endswith("throttled")
    assert int(answer.headers["Retry-After"]) >= 1


def test_deployment_limits_come_from_settings(provisioned: Provisioned) -> None:
    # Given a deployment that permits only Read
    settings: Settings = provisioned.settings.model_copy(update={"permitted_tools": ("Read",)})
    api = Api(Container(settings))
    problem = api.submit_job({"prompt": "hi", "allowed_tools": ["Read", "Grep"]}).is_problem(422)
    assert [e["loc"] for e in problem["errors"]] == [["body", "allowed_tools", 1]]
    assert api.submit_job({"prompt": "hi", "allowed_tools": ["Read"]}).status == 202


# ---------------------------------------------------------------- cancel


def test_cancel_a_queued_job_answers_202_cancelled(api: Api) -> None:
    job_id = api.submit_job(PROMPT).json["job_id"]
    answer = api.cancel_job(job_id)
    assert answer.status == 202
    assert answer.json["status"] == "cancelled"
    assert answer.json["job_id"] == job_id
    assert api.get_job(job_id).json["status"] == "cancelled"


def test_cancel_a_running_job_asks_it_to_stop(api: Api) -> None:
    job_id = api.submit_job(PROMPT).json["job_id"]
    api.container.job_repository.transition(Transition(job_id=job_id, to=JobStatus.RUNNING))
    answer = api.cancel_job(job_id)
    assert answer.status == 202
    assert answer.json["status"] == "running"
    assert api.container.job_service.get(TENANT, job_id).cancel_requested


def test_cancel_another_tenants_job_is_404_and_changes_nothing(api: Api) -> None:
    job_id = api.submit_job(PROMPT).json["job_id"]
    api.cancel_job(job_id, tenant=OTHER_TENANT).is_problem(404)
    assert api.get_job(job_id).json["status"] == "queued"


@pytest.mark.parametrize("job_id", ["00000000-0000-4000-8000-000000000000", "x" * 3000, "idem#x"])
def test_cancel_unknown_job_is_404(api: Api, job_id: str) -> None:
    api.cancel_job(job_id).is_problem(404)

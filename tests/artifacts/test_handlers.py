"""Every zip function, run from what ships: its own directory, the layer and the Lambda
runtime's boto3, nothing else on the path, in a fresh interpreter, over the sample events in
`events/`, against the AWS emulator holding the stack's resources.

These are the tests a missing layer dependency fails (an import that works in the dev
virtualenv but not in Lambda), and the tests that say the artifacts answer as the API
contract says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_jobs.keys import hash_key
from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.ports import Transition
from claude_jobs.wiring import Container
from infra import packaging
from tests.artifacts.artifacts import (
    HAND_KEPT_LAYER,
    SAMPLE_KEY,
    SAMPLE_TENANT,
    Artifacts,
    Deployment,
    Invocation,
    invoke,
)
from tests.events import load_event

#: A job whose result must match a JSON Schema: checked at submit with jsonschema.
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"bullets": {"type": "array", "items": {"type": "string"}}},
    "required": ["bullets"],
}


def submit_event(idempotency_key: str, **fields: Any) -> dict[str, Any]:
    event = load_event("apigw_submit_job.json")
    body = {**json.loads(event["body"]), **fields}
    event["body"] = json.dumps(body)
    event["headers"]["Idempotency-Key"] = idempotency_key
    event["multiValueHeaders"]["Idempotency-Key"] = [idempotency_key]
    return event


def job_event(sample: str, job_id: str) -> dict[str, Any]:
    event = load_event(sample)
    suffix = "/cancel" if event["path"].endswith("/cancel") else ""
    event["path"] = f"/v1/jobs/{job_id}{suffix}"
    event["requestContext"]["path"] = f"/prod{event['path']}"
    event["pathParameters"] = {"job_id": job_id}
    return event


def http(answer: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of an API function's answer; fails on a raised exception."""
    assert "answer" in answer, answer.get("trace")
    response = answer["answer"]
    return response["statusCode"], json.loads(response["body"] or "null")


def answered_cleanly(run: Invocation) -> None:
    assert run.foreign_modules == [], run.foreign_modules
    assert "Traceback" not in run.logs, run.logs[-3000:]


def test_submit_and_status_serve_the_sample_requests(
    artifacts: Artifacts, deployment: Deployment, tmp_path: Path
) -> None:
    # Given the sample submit request, the same with an output_schema, and one whose schema
    # is not a JSON Schema
    events = [
        submit_event("artifact-plain"),
        submit_event("artifact-schema", output_schema=OUTPUT_SCHEMA),
        submit_event("artifact-bad-schema", output_schema={"type": "no-such-type"}),
    ]
    # When the submit function handles them from its artifact
    submitted = invoke(artifacts, deployment, "submit", events, tmp_path)
    # Then the first two are queued jobs of the sample's tenant, the third a 422
    answered_cleanly(submitted)
    (plain_status, plain), (schema_status, schema), (bad_status, bad) = map(http, submitted.answers)
    assert (plain_status, plain["status"]) == (202, "queued")
    assert (schema_status, schema["status"]) == (202, "queued")
    (location,) = submitted.answers[1]["answer"]["multiValueHeaders"]["Location"]
    assert location.endswith(f"/v1/jobs/{schema['job_id']}")
    assert bad_status == 422 and bad["status"] == 422
    assert any(e["loc"][-1] == "output_schema" for e in bad["errors"]), bad

    # When the status function answers for the schema job, the tenant's list and health, and
    # the submit function cancels the plain job
    cancelled = invoke(
        artifacts,
        deployment,
        "submit",
        [job_event("apigw_cancel_job.json", plain["job_id"])],
        tmp_path,
    )
    shown = invoke(
        artifacts,
        deployment,
        "status",
        [
            job_event("apigw_get_job.json", schema["job_id"]),
            job_event("apigw_get_job.json", plain["job_id"]),
            load_event("apigw_list_jobs.json"),
            load_event("apigw_health.json"),
            job_event("apigw_get_job.json", "00000000-0000-4000-8000-000000000000"),
        ],
        tmp_path,
    )
    # Then each answers as the contract says
    answered_cleanly(cancelled)
    answered_cleanly(shown)
    assert http(cancelled.answers[0])[0] == 202
    (got, job), (_, plain_now), (listed, page), (healthy, health), (unknown, problem) = map(
        http, shown.answers
    )
    assert got == 200 and job["status"] == "queued"
    assert job["request"]["output_schema"] == OUTPUT_SCHEMA
    assert job["metadata"] == {"ticket": "OPS-42"}
    assert plain_now["status"] == "cancelled"
    assert listed == 200
    assert {schema["job_id"], plain["job_id"]} <= {item["job_id"] for item in page["items"]}
    assert (healthy, health) == (200, {"status": "ok"})
    assert unknown == 404 and problem["status"] == 404


def test_the_authorizer_allows_the_samples_key_and_refuses_others(
    artifacts: Artifacts, deployment: Deployment, tmp_path: Path
) -> None:
    # Given the sample TOKEN event (its key is registered for the sample tenant), and the
    # same with an unknown key
    allowed = load_event("authorizer_token.json")
    unknown = load_event("authorizer_token.json")
    unknown["authorizationToken"] = "Bearer cjk_ffffffffffff_not-a-registered-key"
    # When the authorizer handles them from its artifact
    run = invoke(artifacts, deployment, "authorizer", [allowed, unknown], tmp_path)
    # Then the sample key gets an Allow policy carrying its tenant; the unknown one is
    # refused the way API Gateway understands (an "Unauthorized" error → 401)
    answered_cleanly(run)
    policy = run.answers[0]["answer"]
    assert policy["principalId"] == SAMPLE_TENANT
    assert policy["context"] == {"tenant_id": SAMPLE_TENANT, "key_id": hash_key(SAMPLE_KEY)[:12]}
    assert {s["Effect"] for s in policy["policyDocument"]["Statement"]} == {"Allow"}
    assert run.answers[1] == {
        "raised": "Exception",
        "message": "Unauthorized",
        "trace": run.answers[1]["trace"],
    }


def test_the_trigger_function_turns_the_sample_events_into_jobs(
    artifacts: Artifacts, deployment: Deployment, tmp_path: Path
) -> None:
    # Given the object the sample S3 notification names, in the inbox bucket
    s3 = deployment.client("s3")
    s3.put_object(Bucket="test-inbox", Key="inbox/meeting notes.txt", Body=b"Agenda: ship it.\n")
    events = [
        load_event("s3_object_created.json"),
        load_event("eventbridge_run_task.json"),
        load_event("eventbridge_scheduled.json"),
    ]
    # When the trigger function handles the S3 and EventBridge samples from its artifact
    run = invoke(artifacts, deployment, "trigger", events, tmp_path)
    # Then each becomes one queued job through its configured trigger
    answered_cleanly(run)
    outcomes = [a["answer"]["outcomes"] for a in run.answers]
    assert [[(o["status"], o["trigger"]) for o in each] for each in outcomes] == [
        [("created", "inbox-review")],
        [("created", "run-task")],
        [("created", "nightly-digest")],
    ]
    with deployment.environment():
        jobs = Container(deployment.provisioned.settings).job_repository
        created = [jobs.get(each[0]["job_id"]) for each in outcomes]
    assert all(job is not None and job.status.value == "queued" for job in created)
    assert created[0] is not None and created[0].prompt is not None
    assert "Agenda: ship it." in created[0].prompt


def test_the_notifier_publishes_the_sample_completion(
    artifacts: Artifacts, deployment: Deployment, tmp_path: Path
) -> None:
    # Given a queue subscribed to the bus, and the sample stream records of a job starting
    # and of it succeeding (without the sample's webhook: there is no network here)
    bus = deployment.provisioned.settings.event_bus_name
    sqs, events = deployment.client("sqs"), deployment.client("events")
    queue_url = sqs.create_queue(QueueName="artifact-completions")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="artifact-all", EventBusName=bus, EventPattern=json.dumps({"source": ["claude-jobs"]})
    )
    events.put_targets(
        Rule="artifact-all", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}]
    )
    succeeded = load_event("dynamodb_stream_job_succeeded.json")
    # When the notifier handles them from its artifact
    run = invoke(
        artifacts,
        deployment,
        "notifier",
        [load_event("dynamodb_stream_job_started.json"), succeeded],
        tmp_path,
    )
    # Then no record fails, and exactly the completion is published on the bus
    answered_cleanly(run)
    assert [a["answer"] for a in run.answers] == [{"batchItemFailures": []}] * 2
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    (published,) = [json.loads(m["Body"]) for m in messages]
    assert published["detail-type"] == "Job Succeeded"
    assert published["detail"]["job_id"] == "0b8e4a52-4c1e-4bd5-9a55-0f2a3c1d9e77"
    # And the job's webhook delivery is on the webhook queue (the notifier calls nobody)
    webhooks = deployment.provisioned.settings.webhook_queue_url
    (delivery,) = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=webhooks, MaxNumberOfMessages=10)["Messages"]
    ]
    assert delivery["url"] == "https://hooks.example.com/claude-jobs"
    assert json.loads(delivery["body"])["job_id"] == published["detail"]["job_id"]


def test_the_webhook_function_records_the_sample_delivery(
    artifacts: Artifacts, deployment: Deployment, tmp_path: Path
) -> None:
    # Given a finished job with the sample delivery's webhook, whose host does not resolve
    # here (there is no network)
    with deployment.environment():
        container = Container(deployment.provisioned.settings)
        request = JobRequest(prompt="hi", webhook_url="https://hooks.example.com/claude-jobs")
        job = container.job_service.submit(SAMPLE_TENANT, request).job
        container.job_repository.transition(Transition(job_id=job.job_id, to=JobStatus.RUNNING))
        container.job_repository.transition(Transition(job_id=job.job_id, to=JobStatus.SUCCEEDED))
    event = load_event("sqs_webhook.json")
    message = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**message, "job_id": job.job_id})
    # When the webhook function handles the sample SQS event from its artifact
    run = invoke(artifacts, deployment, "webhook", [event], tmp_path)
    # Then the message is done (a refused URL is not retried) and the job shows why it failed
    answered_cleanly(run)
    assert [a["answer"] for a in run.answers] == [{"batchItemFailures": []}]
    with deployment.environment():
        stored = Container(deployment.provisioned.settings).job_repository.get(job.job_id)
    assert stored is not None and stored.webhook is not None
    assert stored.webhook.status == "failed"
    assert (stored.webhook.last_error or "").startswith("refused: cannot resolve the host")


def test_the_slot_keepers_and_the_reconciler_serve_their_events(
    artifacts: Artifacts, deployment: Deployment, tmp_path: Path
) -> None:
    # Given two queued jobs of the sample's tenant, submitted through the submit artifact
    submitted = invoke(
        artifacts,
        deployment,
        "submit",
        [submit_event("artifact-lost"), submit_event("artifact-expired")],
        tmp_path,
    )
    answered_cleanly(submitted)
    lost_id, expired_id = (http(a)[1]["job_id"] for a in submitted.answers)
    settings = deployment.provisioned.settings
    with deployment.environment():
        before = Container(settings).job_repository.tenant_usage(SAMPLE_TENANT)
    # When the first job's message reaches the lost-jobs function from the dead-letter queue
    dead_letter = load_event("sqs_job.json")
    dead_letter["Records"][0]["body"] = json.dumps({"job_id": lost_id, "tenant_id": SAMPLE_TENANT})
    lost = invoke(artifacts, deployment, "lostjobs", [dead_letter], tmp_path)
    # And the second job's item is removed (TTL) and its REMOVE record reaches expiry
    raw = deployment.client("dynamodb").get_item(
        TableName=settings.jobs_table, Key={"job_id": {"S": expired_id}}
    )["Item"]
    deployment.client("dynamodb").delete_item(
        TableName=settings.jobs_table, Key={"job_id": {"S": expired_id}}
    )
    removed = load_event("dynamodb_stream_job_started.json")
    record = removed["Records"][0]
    record["eventName"] = "REMOVE"
    record["dynamodb"] = {
        **{k: v for k, v in record["dynamodb"].items() if k not in {"NewImage", "OldImage"}},
        "Keys": {"job_id": {"S": expired_id}},
        "OldImage": raw,
    }
    expiry = invoke(artifacts, deployment, "expiry", [removed], tmp_path)
    # And the reconciler runs on its schedule
    reconciled = invoke(
        artifacts, deployment, "reconciler", [load_event("eventbridge_scheduled.json")], tmp_path
    )
    # Then each answers cleanly from what ships: the lost job failed worker_lost, both jobs'
    # slots came back, and the reconciler reported its run
    for run in (lost, expiry, reconciled):
        answered_cleanly(run)
    assert lost.answers[0]["answer"] == {"batchItemFailures": []}
    assert expiry.answers[0]["answer"] == {"batchItemFailures": []}
    assert set(reconciled.answers[0]["answer"]) == {"redriven", "repaired", "drifting", "expired"}
    with deployment.environment():
        container = Container(settings)
        job = container.job_repository.get(lost_id)
        after = container.job_repository.tenant_usage(SAMPLE_TENANT)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "worker_lost"
    assert after.pending == before.pending - 2


def test_every_zip_function_is_run_here() -> None:
    # Given the zip functions the CDK app deploys, Then the tests above run each of them
    assert packaging.zip_functions() == [
        "authorizer",
        "expiry",
        "lostjobs",
        "notifier",
        "reconciler",
        "status",
        "submit",
        "trigger",
        "webhook",
    ]


@pytest.fixture(scope="module")
def hand_kept_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built from the hand-kept requirement list it had before (no jsonschema)."""
    root = tmp_path_factory.mktemp("hand-kept-layer")
    requirements = packaging.BUILD_DIR / "hand-kept-layer-requirements.txt"
    requirements.parent.mkdir(parents=True, exist_ok=True)
    requirements.write_text(HAND_KEPT_LAYER)
    packaging.build_layer(root, packaging.HOST, requirements)
    return root / "python"


def test_the_hand_kept_layer_fails_a_submit_with_an_output_schema(
    artifacts: Artifacts, deployment: Deployment, hand_kept_layer: Path, tmp_path: Path
) -> None:
    # Given the layer as its hand-kept list built it (powertools and pydantic only)
    events = [
        submit_event("hand-kept-plain"),
        submit_event("hand-kept-schema", output_schema=OUTPUT_SCHEMA),
    ]
    # When the submit function runs on it
    run = invoke(artifacts, deployment, "submit", events, tmp_path, layer=hand_kept_layer)
    # Then a plain job is accepted, but one with an output_schema gets a 500: jsonschema
    # cannot be imported (what AWS would have answered)
    assert http(run.answers[0])[0] == 202
    status, problem = http(run.answers[1])
    assert status == 500 and problem["status"] == 500
    assert "No module named 'jsonschema'" in run.logs


def test_the_shipped_submit_function_creates_uploads(
    artifacts: Artifacts, deployment: Deployment, tmp_path: Path
) -> None:
    # Given the sample upload request, and one with a hostile filename
    hostile = load_event("apigw_create_upload.json")
    hostile["body"] = json.dumps({"filename": "../../etc/passwd", "size_bytes": 1})
    # When the submit function handles them from its artifact
    run = invoke(
        artifacts, deployment, "submit", [load_event("apigw_create_upload.json"), hostile], tmp_path
    )
    # Then the first is a presigned PUT of the sample's tenant (SigV4: the size is signed), the
    # second a 422 on the filename
    answered_cleanly(run)
    (status, upload), (bad_status, bad) = map(http, run.answers)
    assert status == 201, upload
    assert upload["upload_id"].startswith("upl_")
    assert f"/uploads/{SAMPLE_TENANT}/{upload['upload_id']}/content" in upload["upload_url"]
    assert "X-Amz-SignedHeaders=content-length" in upload["upload_url"]
    assert bad_status == 422 and bad["errors"][0]["loc"] == ["body", "filename"]

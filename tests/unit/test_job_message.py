"""The jobs-queue message: one model written by every sender and read by the worker, and
parsed from a real-shaped SQS event by Powertools' parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser import envelopes, parse
from pydantic import ValidationError

from claude_jobs.adapters.queue import job_message
from claude_jobs.job_message import JobMessage, job_record_model
from claude_jobs.models import Job, JobOptions, JobStatus

SQS_EVENT = Path(__file__).parents[2] / "events" / "sqs_job.json"


def test_the_submit_paths_message_is_compact_json_of_the_job_and_its_tenant() -> None:
    # Given a queued job
    job = Job(
        job_id="j-1",
        tenant_id="acme",
        status=JobStatus.QUEUED,
        created_at=datetime.now(UTC),
        options=JobOptions(),
    )
    # When its message is written, Then it is the compact body the worker reads back
    body = job_message(job)
    assert body == '{"job_id":"j-1","tenant_id":"acme"}'
    assert JobMessage.model_validate_json(body) == JobMessage(job_id="j-1", tenant_id="acme")


def test_a_deferral_count_round_trips_and_defaults_are_left_out() -> None:
    deferred = JobMessage(job_id="j-1", tenant_id="acme", deferrals=3)
    assert json.loads(deferred.body()) == {"job_id": "j-1", "tenant_id": "acme", "deferrals": 3}
    assert JobMessage.model_validate_json(deferred.body()).deferrals == 3
    assert JobMessage(job_id="j-2").body() == '{"job_id":"j-2"}'


@pytest.mark.parametrize("body", ["", "not json", "[]", '{"tenant_id":"acme"}', '{"job_id":1}'])
def test_a_malformed_body_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        JobMessage.model_validate_json(body)


def test_a_real_sqs_record_parses_through_powertools_parser() -> None:
    # Given the sample SQS event (a real record's shape)
    event = json.loads(SQS_EVENT.read_text())
    # When Powertools' parser parses each record with the job record model
    records = [parse(event=record, model=job_record_model()) for record in event["Records"]]
    # Then each body is a JobMessage
    message = records[0].body
    assert isinstance(message, JobMessage)
    assert message == JobMessage(job_id="0b8e4a52-4c1e-4bd5-9a55-0f2a3c1d9e77", tenant_id="acme")
    # And the SQS envelope gives the same messages
    assert parse(event=event, model=JobMessage, envelope=envelopes.SqsEnvelope) == [message]


def test_a_record_whose_body_is_not_a_job_message_is_refused_by_the_parser() -> None:
    record = json.loads(SQS_EVENT.read_text())["Records"][0]
    with pytest.raises(ValidationError):
        parse(event={**record, "body": '{"tenant_id":"acme"}'}, model=job_record_model())

"""Documents are opaque: any valid JSON a caller or the model supplies (an empty property name,
1e300, 50 digits, 64 levels) is accepted, stored and answered exactly; only JSON's own limits
(size, depth ≤ 64) refuse one, with a 422."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from claude_jobs.adapters.dynamo import to_item
from claude_jobs.adapters.jobs_table import job_to_item
from claude_jobs.models import JobStatus
from tests.fakes import Finish, ScriptedRunner

from .conftest import TENANT, Api
from .test_documents import run_worker

FIFTY_DIGITS = 12345678901234567890123456789012345678901234567890


def nest(levels: int) -> dict[str, Any]:
    """A valid JSON Schema `levels` objects deep."""
    schema: dict[str, Any] = {}
    for _ in range(levels - 1):
        schema = {"items": schema}
    return schema


POISON_SCHEMAS = {
    "empty property name": {"type": "object", "properties": {"": {"type": "string"}}},
    "1e300": {"type": "number", "maximum": 1e300},
    "50-digit multipleOf": {"type": "integer", "multipleOf": FIFTY_DIGITS},
    "40 levels": nest(40),
    "64 levels": nest(64),
}
POISON_OUTPUT = {"": 1, "x": 1e300, "n": FIFTY_DIGITS, "deep": nest(40), "tiny": 1e-300}


def exactly(value: Any) -> str:
    """A JSON value's canonical text: equal texts, equal values (and types)."""
    return json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("schema", POISON_SCHEMAS.values(), ids=POISON_SCHEMAS.keys())
def test_any_valid_schema_is_accepted_and_answered_exactly_everywhere(
    api: Api, schema: dict[str, Any]
) -> None:
    # Given a job whose output schema DynamoDB's own types could not hold
    answer = api.submit_job({"prompt": "hi", "output_schema": schema})
    # Then it is accepted
    assert answer.status == 202, answer.text
    job_id = answer.json["job_id"]
    # And answered exactly by GET, by the list and by cancel
    got = api.get_job(job_id)
    assert got.status == 200, got.text
    assert exactly(got.json["request"]["output_schema"]) == exactly(schema)
    listed = api.list_jobs()
    assert listed.status == 200, listed.text
    assert [exactly(j["request"]["output_schema"]) for j in listed.json["items"]] == [
        exactly(schema)
    ]
    cancelled = api.cancel_job(job_id)
    assert cancelled.status == 202, cancelled.text
    assert cancelled.json["status"] == JobStatus.CANCELLED


def test_a_schema_deeper_than_64_levels_is_a_clean_422(api: Api) -> None:
    answer = api.submit_job({"prompt": "hi", "output_schema": nest(65)})
    problem = answer.is_problem(422)
    assert problem["errors"], problem


def test_any_structured_output_round_trips_exactly(api: Api, tmp_path: Path) -> None:
    # Given a job whose structured output DynamoDB's own types could not hold
    job_id = api.submit_job({"prompt": "hi", "output_schema": {"type": "object"}}).json["job_id"]
    # When the worker records it
    run_worker(api.container, job_id, ScriptedRunner(Finish(structured=POISON_OUTPUT)), tmp_path)
    # Then the job succeeded and GET and the list answer it exactly
    got = api.get_job(job_id)
    assert got.status == 200, got.text
    assert got.json["status"] == JobStatus.SUCCEEDED
    assert exactly(got.json["result"]["structured"]) == exactly(POISON_OUTPUT)
    (listed,) = api.list_jobs().json["items"]
    assert exactly(listed["result"]["structured"]) == exactly(POISON_OUTPUT)


def test_items_written_with_native_maps_still_read(api: Api) -> None:
    # Given a job item written the way the service wrote items before (native maps)
    job_id = api.submit_job({"prompt": "hi", "metadata": {"k": "v"}}).json["job_id"]
    job = api.container.job_repository.get(job_id)
    assert job is not None
    plain = json.loads(json.dumps(job_to_item(job, 30)))
    legacy = {**plain, **to_item(job.model_dump(mode="json", exclude_none=True))}
    legacy["result"] = to_item({"r": {"text": "old", "is_error": False}})["r"]
    legacy["status"] = {"S": "succeeded"}
    settings = api.container.settings
    boto3.client("dynamodb").put_item(TableName=settings.jobs_table, Item=legacy)
    # When it is read through the API
    got = api.get_job(job_id)
    # Then it answers as before
    assert got.status == 200, got.text
    assert got.json["metadata"] == {"k": "v"}
    assert got.json["result"]["text"] == "old"
    assert got.json["request"]["max_turns"] == 25
    assert api.list_jobs(tenant=TENANT).json["items"][0]["job_id"] == job_id

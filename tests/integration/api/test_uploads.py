"""POST /v1/uploads and a job's `inputs`, through the submit and status functions' handlers,
against moto (the bucket and the job table are real emulated resources)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from claude_jobs.models import Job
from claude_jobs.wiring import Container
from claude_jobs_tools.provision import Provisioned
from tests.events import load_event

from .conftest import OTHER_TENANT, TENANT, Answer, Api, as_tenant, with_body

PROMPT = "Summarise the attached files."


def create_upload(api: Api, body: Any, tenant: str = TENANT) -> Answer:
    event = with_body(load_event("apigw_create_upload.json"), body)
    return api.call(api.submit, as_tenant(event, tenant))


def put_content(provisioned: Provisioned, upload: dict[str, Any], data: bytes) -> None:
    """What the caller's PUT to `upload_url` leaves in the bucket (moto in-process does not
    serve URLs; the e2e suite PUTs over HTTP)."""
    path = urlsplit(upload["upload_url"]).path
    key = path[path.index("/uploads/") + 1 :]
    boto3.client("s3").put_object(Bucket=provisioned.settings.results_bucket, Key=key, Body=data)


def uploaded(
    api: Api, provisioned: Provisioned, name: str, data: bytes, tenant: str = TENANT
) -> str:
    answer = create_upload(api, {"filename": name, "size_bytes": len(data)}, tenant)
    assert answer.status == 201, answer.text
    put_content(provisioned, answer.json, data)
    upload_id: str = answer.json["upload_id"]
    return upload_id


def test_an_upload_is_a_presigned_put_that_binds_the_tenant_and_the_size(
    api: Api, provisioned: Provisioned
) -> None:
    # Given a tenant's upload request
    # When the submit function handles it
    answer = create_upload(api, {"filename": "report.csv", "size_bytes": 1234})
    # Then it answers 201 with a SigV4 presigned PUT whose signature covers Content-Length
    assert answer.status == 201, answer.text
    body = answer.json
    assert body["upload_id"].startswith("upl_")
    assert body["method"] == "PUT"
    assert body["headers"]["Content-Length"] == "1234"
    url = urlsplit(body["upload_url"])
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "content-length" in query["X-Amz-SignedHeaders"][0].split(";")
    # under the tenant's own prefix, the upload's id in the key
    assert url.path.endswith(f"/uploads/{TENANT}/{body['upload_id']}/content")
    # and it expires 24 h after creation (the URL itself sooner)
    created = datetime.now(UTC)
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=23, minutes=59) < expires - created <= timedelta(hours=24)
    assert datetime.fromisoformat(body["upload_url_expires_at"]) <= expires


@pytest.mark.parametrize(
    "filename",
    [
        "../etc/passwd",
        "/etc/passwd",
        "a/b.txt",
        "a\\b.txt",
        "..",
        ".",
        "a\x00b",
        ".bashrc",
        ".mcp.json",
        "-rf",
        "x" * 201,
        "é" * 128,  # 128 characters, 256 bytes
        "out",
        "evil\u202etxt.exe",  # right-to-left override
        "two\nlines",
        "",
        " padded",
        "trailing.",
    ],
)
def test_a_hostile_filename_is_refused_with_422(
    api: Api, provisioned: Provisioned, filename: str
) -> None:
    # Given a filename that could escape, hide, or clash in the workspace
    # When an upload is requested with it
    answer = create_upload(api, {"filename": filename, "size_bytes": 10})
    # Then 422 names the field, and nothing is written
    problem = answer.is_problem(422)
    assert [e["loc"] for e in problem["errors"]] == [["body", "filename"]]
    listed = boto3.client("s3").list_objects_v2(Bucket=provisioned.settings.results_bucket)
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"filename": "big.bin", "size_bytes": 100 * 1024 * 1024 + 1}, ["body", "size_bytes"]),
        ({"filename": "neg.bin", "size_bytes": -1}, ["body", "size_bytes"]),
        ({"filename": "x.bin", "size_bytes": 1, "key": "uploads/x"}, ["body", "key"]),
        ({"size_bytes": 1}, ["body", "filename"]),
    ],
)
def test_an_invalid_upload_request_is_422(api: Api, body: dict[str, Any], loc: list[str]) -> None:
    # Given an upload request over the cap, negative, with an unknown field, or no name
    # When the submit function handles it
    problem = create_upload(api, body).is_problem(422)
    # Then the problem names the field
    assert loc in [e["loc"] for e in problem["errors"]], problem


def test_a_job_with_inputs_records_them_and_shows_them(
    api: Api, provisioned: Provisioned, container: Container
) -> None:
    # Given two uploaded files
    first = uploaded(api, provisioned, "data.csv", b"a,b\n1,2\n")
    second = uploaded(api, provisioned, "notes ünïcode.txt", b"hello")
    # When a job lists them
    answer = api.submit_job({"prompt": PROMPT, "inputs": [first, second]})
    # Then it is queued with both inputs, under their filenames and declared sizes
    assert answer.status == 202, answer.text
    job = container.job_repository.get(answer.json["job_id"])
    assert isinstance(job, Job)
    assert [(i.upload_id, i.filename, i.size) for i in job.inputs] == [
        (first, "data.csv", 8),
        (second, "notes ünïcode.txt", 5),
    ]
    assert all(i.key.startswith(f"uploads/{TENANT}/") for i in job.inputs)
    # and the job view lists them
    view = api.get_job(answer.json["job_id"]).json
    assert view["inputs"] == [
        {"upload_id": first, "filename": "data.csv", "size_bytes": 8},
        {"upload_id": second, "filename": "notes ünïcode.txt", "size_bytes": 5},
    ]


def _input_errors(answer: Answer) -> list[tuple[list[Any], str]]:
    problem = answer.is_problem(422)
    return [(e["loc"], e["msg"]) for e in problem["errors"]]


def test_another_tenants_upload_is_unknown(api: Api, provisioned: Provisioned) -> None:
    # Given an upload of tenant-b
    theirs = uploaded(api, provisioned, "secret.txt", b"theirs", tenant=OTHER_TENANT)
    # When tenant-a lists it in a job
    errors = _input_errors(api.submit_job({"prompt": PROMPT, "inputs": [theirs]}))
    # Then 422: no upload of that id for this tenant (nothing says it exists elsewhere)
    assert errors == [
        (["body", "inputs", 0], f"no upload {theirs} (unknown to this tenant, or expired)")
    ]


def test_unknown_never_uploaded_repeated_and_clashing_inputs_are_each_named(
    api: Api, provisioned: Provisioned
) -> None:
    # Given an uploaded file, an upload never PUT, and two uploads of one filename
    good = uploaded(api, provisioned, "a.txt", b"aaa")
    empty = create_upload(api, {"filename": "later.txt", "size_bytes": 3}).json["upload_id"]
    twin = uploaded(api, provisioned, "a.txt", b"bbb")
    unknown = "upl_" + "z" * 26
    # When one job lists them all (and one twice)
    answer = api.submit_job({"prompt": PROMPT, "inputs": [good, unknown, empty, good, twin]})
    # Then each bad entry is named, and no job is made
    errors = _input_errors(answer)
    assert [loc for loc, _ in errors] == [["body", "inputs", i] for i in (1, 2, 3, 4)]
    assert "unknown to this tenant" in errors[0][1]
    assert "has no file yet" in errors[1][1]
    assert "repeats inputs[0]" in errors[2][1]
    assert "also the name of inputs[0]" in errors[3][1]


def test_an_upload_of_another_size_than_declared_is_refused(
    api: Api, provisioned: Provisioned
) -> None:
    # Given an upload declared as 4 bytes whose object holds 400 (the emulator does not check
    # the signed length; S3 would refuse the PUT)
    answer = create_upload(api, {"filename": "small.txt", "size_bytes": 4})
    put_content(provisioned, answer.json, b"x" * 400)
    # When a job lists it
    errors = _input_errors(api.submit_job({"prompt": PROMPT, "inputs": [answer.json["upload_id"]]}))
    # Then 422 says so
    assert "is 400 bytes, 4 were declared" in errors[0][1]


def test_an_expired_upload_is_refused(api: Api, provisioned: Provisioned) -> None:
    # Given an upload whose record says it expired a minute ago
    upload_id = uploaded(api, provisioned, "old.txt", b"old")
    s3 = boto3.client("s3")
    bucket = provisioned.settings.results_bucket
    key = f"uploads/{TENANT}/{upload_id}/upload.json"
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    record["expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())
    # When a job lists it
    errors = _input_errors(api.submit_job({"prompt": PROMPT, "inputs": [upload_id]}))
    # Then 422: expired
    assert f"upload {upload_id} expired at" in errors[0][1]


def test_more_than_twenty_inputs_or_malformed_ids_are_422(api: Api) -> None:
    # Given 21 ids, and a malformed one (a key-like string)
    many = ["upl_" + f"{i:026d}" for i in range(21)]
    # When jobs list them
    too_many = api.submit_job({"prompt": PROMPT, "inputs": many}).is_problem(422)
    malformed = api.submit_job({"prompt": PROMPT, "inputs": ["../uploads/x"]}).is_problem(422)
    # Then both are 422 on `inputs`
    assert ["body", "inputs"] in [e["loc"] for e in too_many["errors"]]
    assert ["body", "inputs", 0] in [e["loc"] for e in malformed["errors"]]


def test_inputs_over_the_jobs_total_are_refused(provisioned: Provisioned) -> None:
    # Given a deployment whose jobs take at most 10 input bytes together
    settings = provisioned.settings.model_copy(update={"inputs_max_bytes": 10})
    api = Api(Container(settings))
    first = uploaded(api, provisioned, "a.txt", b"123456")
    second = uploaded(api, provisioned, "b.txt", b"123456")
    # When a job lists 12 bytes of inputs
    errors = _input_errors(api.submit_job({"prompt": PROMPT, "inputs": [first, second]}))
    # Then 422 names the limit
    assert errors == [
        (
            ["body", "inputs"],
            "the inputs are 12 bytes together; at most 10 (the deployment's INPUTS_MAX_BYTES)",
        )
    ]

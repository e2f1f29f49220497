"""Reading requests defensively, building events, and the authorizer's pure parts."""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import pytest

from claude_jobs.api import http
from claude_jobs.api.authorizer import api_resource, bearer_token
from claude_jobs.errors import (
    JobNotFoundError,
    PayloadTooLargeError,
    RequestValidationError,
    UnauthorizedError,
)
from claude_jobs.job_service import JobService
from claude_jobs.models import MAX_BODY_BYTES
from claude_jobs.settings import Settings
from claude_jobs_tools.api_gateway_events import authorizer_event, match_resource, rest_event


def event(body: str | bytes | None, **kwargs: Any) -> dict[str, Any]:
    return rest_event("POST", "/v1/jobs", body=body, **kwargs)


def test_body_exactly_256_kib_is_accepted_one_more_byte_is_413() -> None:
    assert len(http.body_bytes(event("x" * MAX_BODY_BYTES))) == MAX_BODY_BYTES
    with pytest.raises(PayloadTooLargeError):
        http.body_bytes(event("x" * (MAX_BODY_BYTES + 1)))
    with pytest.raises(PayloadTooLargeError):
        http.body_bytes(event(b"x" * (MAX_BODY_BYTES + 1)))  # base64: measured decoded


def test_base64_bodies_are_decoded() -> None:
    encoded = event(b'{"prompt": "hi"}')
    assert encoded["isBase64Encoded"] is True
    assert http.json_body(encoded) == {"prompt": "hi"}


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "nope",
        '{"a": NaN}',
        '{"a": Infinity}',
        '"\\udc00"',
        b"\xff\xfe",
        "[" * 70 + "]" * 70,
    ],
)
def test_unusable_json_is_a_422_on_the_body(raw: str | bytes) -> None:
    with pytest.raises(RequestValidationError) as error:
        http.json_body(event(raw))
    assert [e.loc for e in error.value.errors] == [("body",)]


def test_storable_numbers_pass() -> None:
    body = '{"a": [0, 0.0, -1.5, 1e-100, 9.9e124, 12345678901234567890123456789012345678]}'
    assert http.json_body(event(body))["a"][0] == 0


def test_request_errors_name_body_fields_and_hide_inputs() -> None:
    service = JobService(cast(Any, None), cast(Any, None), Settings())  # parsing needs no I/O
    with pytest.raises(RequestValidationError) as error:
        service.parse_request({"prompt": "sk-ant-test-secret", "max_turns": "lots", "x": 1})
    locs = {e.loc for e in error.value.errors}
    assert locs == {("body", "max_turns"), ("body", "x")}
    assert all("sk-ant-test-secret" not in e.msg for e in error.value.errors)


def test_tenant_comes_only_from_the_authorizer_context() -> None:
    assert http.tenant_id(event(None, authorizer={"tenant_id": "t1"})) == "t1"
    for ctx in (None, {}, {"tenant_id": ""}, {"tenant_id": 7}):
        with pytest.raises(UnauthorizedError):
            http.tenant_id(event(None, authorizer=ctx))
    spoofed = event(None, headers={"X-Tenant-Id": "t1"})
    with pytest.raises(UnauthorizedError):
        http.tenant_id(spoofed)


def test_headers_are_case_insensitive() -> None:
    ev = event(None, headers={"idempotency-key": "abc"})
    assert http.header(ev, "Idempotency-Key") == "abc"
    assert http.header(ev, "If-None-Match") is None


@pytest.mark.parametrize("raw", ["-1", "21", "x", "1e3", "", " "])
def test_query_ints_must_be_in_range(raw: str) -> None:
    ev = rest_event("GET", "/v1/jobs/x", query={"wait": raw})
    with pytest.raises(RequestValidationError):
        http.query_int(ev, "wait", 0, 20, default=0)


def test_query_int_default_and_value() -> None:
    assert http.query_int(rest_event("GET", "/v1/jobs"), "limit", 1, 100, default=20) == 20
    ev = rest_event("GET", "/v1/jobs", query={"limit": "7"})
    assert http.query_int(ev, "limit", 1, 100, default=20) == 7


@pytest.mark.parametrize("job_id", ["", "idem#abc", "a/b", "x" * 129, "../etc"])
def test_impossible_job_ids_are_not_found(job_id: str) -> None:
    with pytest.raises(JobNotFoundError):
        http.job_id(job_id)


def test_rest_event_has_the_api_gateway_shape() -> None:
    ev = rest_event(
        "GET",
        "/v1/jobs/abc",
        headers={"Accept": "application/json"},
        query={"wait": "5"},
        authorizer={"tenant_id": "t1", "key_id": "k1"},
        request_id="req-1",
    )
    assert ev["resource"] == "/v1/jobs/{job_id}"
    assert ev["pathParameters"] == {"job_id": "abc"}
    assert ev["multiValueQueryStringParameters"] == {"wait": ["5"]}
    assert ev["multiValueHeaders"]["Accept"] == ["application/json"]
    context = ev["requestContext"]
    assert context["requestId"] == "req-1" and context["path"] == "/prod/v1/jobs/abc"
    assert context["authorizer"]["principalId"] == "t1"
    assert context["authorizer"]["key_id"] == "k1"
    json.dumps(ev)
    assert base64.b64decode(event(b"\x00")["body"]) == b"\x00"


def test_resources_match_the_routes() -> None:
    assert match_resource("/v1/jobs/j1/cancel") == ("/v1/jobs/{job_id}/cancel", {"job_id": "j1"})
    assert match_resource("/v1/jobs") == ("/v1/jobs", None)
    assert match_resource("/v2/x")[0] == "/{proxy+}"


def test_authorizer_resource_covers_the_whole_stage() -> None:
    arn = authorizer_event("Bearer k", "POST", "/v1/jobs/x/cancel")["methodArn"]
    assert api_resource(arn) == "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*"
    with pytest.raises(ValueError, match="ARN"):
        api_resource("arn:aws:lambda:us-east-1:123456789012:function:f")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
        ("abc", None),
    ],
)
def test_bearer_tokens(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token

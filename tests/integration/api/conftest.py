"""Fixtures for the API handlers: real handler modules, real-shaped events, moto behind them."""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore.stub import Stubber

from claude_jobs.wiring import Container
from claude_jobs_tools.provision import Provisioned
from tests.events import load_event
from tests.lambda_context import lambda_context

ROOT = Path(__file__).resolve().parents[3]
TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"


@functools.cache
def load_handler(name: str) -> ModuleType:
    """`functions/<name>/handler.py`, imported as Lambda would (by file, not as a package),
    once per test session like once per container; tests inject their own Container."""
    path = ROOT / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"_api_test_{name}_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_tenant(event: dict[str, Any], tenant: str | None) -> dict[str, Any]:
    """The event as if the authorizer had resolved `tenant` (None: no authorizer context)."""
    if tenant is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"] = {
            "principalId": tenant,
            "integrationLatency": 0,
            "tenant_id": tenant,
            "key_id": "0a1b2c3d4e5f",
        }
    return event


def with_headers(event: dict[str, Any], **headers: str | None) -> dict[str, Any]:
    for name, value in headers.items():
        name = name.replace("_", "-")
        for key in [k for k in event["headers"] if k.lower() == name.lower()]:
            del event["headers"][key]
            event["multiValueHeaders"].pop(key, None)
        if value is not None:
            event["headers"][name] = value
            event["multiValueHeaders"][name] = [value]
    return event


def with_query(event: dict[str, Any], **query: str) -> dict[str, Any]:
    event["queryStringParameters"] = dict(query) or None
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    return event


def with_job_id(event: dict[str, Any], job_id: str) -> dict[str, Any]:
    suffix = "".join(f"/{part}" for part in event["path"].split("/")[4:])  # /cancel, /events
    event["path"] = f"/v1/jobs/{job_id}{suffix}"
    event["requestContext"]["path"] = f"/prod{event['path']}"
    event["pathParameters"] = {"job_id": job_id}
    return event


def with_body(event: dict[str, Any], body: Any, *, base64_encoded: bool = False) -> dict[str, Any]:
    raw: bytes | str = body if isinstance(body, bytes | str) else json.dumps(body)
    if base64_encoded:
        data = raw.encode() if isinstance(raw, str) else raw
        event["body"] = base64.b64encode(data).decode()
        event["isBase64Encoded"] = True
    else:
        assert isinstance(raw, str)
        event["body"] = raw
        event["isBase64Encoded"] = False
    return event


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str | None

    @property
    def json(self) -> Any:
        assert self.text is not None
        return json.loads(self.text)

    def is_problem(self, status: int) -> dict[str, Any]:
        """Assert this is an RFC 9457 problem with `status`; return its body."""
        assert self.status == status, (self.status, self.text)
        assert self.headers["Content-Type"] == "application/problem+json"
        body: dict[str, Any] = self.json
        assert body["status"] == status
        assert {"type", "title", "detail", "request_id"} <= body.keys()
        return body

    def is_unavailable(self) -> dict[str, Any]:
        """Assert this is the 503 `service_unavailable` problem with `Retry-After` (a service
        the request needs failed; nothing was done); return its body."""
        body = self.is_problem(503)
        assert body["type"].endswith("service_unavailable")
        assert int(self.headers["Retry-After"]) > 0
        return body


def failing(client: Any, operation: str, code: str = "InternalServiceError") -> Stubber:
    """A Stubber on `client` whose next call, `operation`, fails with a 500 `code` (activate it
    with `with`)."""
    stubber = Stubber(client)
    stubber.add_client_error(operation, service_error_code=code, http_status_code=500)
    return stubber


class Api:
    """Calls the real `lambda_handler`s with events and reads their proxy responses."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.submit = load_handler("submit")
        self.status = load_handler("status")
        self.submit.function.container = container
        self.status.function.container = container

    def call(self, module: ModuleType, event: dict[str, Any]) -> Answer:
        function = "submit" if module is self.submit else "status"
        response = module.lambda_handler(event, lambda_context(function))
        json.dumps(response)  # API Gateway needs a JSON-serializable proxy response
        headers = {k: v[-1] for k, v in response.get("multiValueHeaders", {}).items()}
        headers.update(response.get("headers") or {})
        body = response.get("body")
        if response.get("isBase64Encoded") and body:
            body = base64.b64decode(body).decode()
        return Answer(response["statusCode"], headers, body or None)

    def submit_job(
        self, body: Any = None, tenant: str | None = TENANT, **headers: str | None
    ) -> Answer:
        # The sample event carries an Idempotency-Key; only the caller's counts here.
        headers.setdefault("Idempotency_Key", None)
        event = load_event("apigw_submit_job.json")
        if body is not None:
            with_body(event, body)
        return self.call(self.submit, with_headers(as_tenant(event, tenant), **headers))

    def get_job(
        self,
        job_id: str,
        tenant: str | None = TENANT,
        query: dict[str, str] | None = None,
        **headers: str | None,
    ) -> Answer:
        event = with_job_id(load_event("apigw_get_job.json"), job_id)
        if query is not None:
            with_query(event, **query)
        return self.call(self.status, with_headers(as_tenant(event, tenant), **headers))

    def list_jobs(self, tenant: str | None = TENANT, **query: str) -> Answer:
        event = with_query(load_event("apigw_list_jobs.json"), **query)
        return self.call(self.status, as_tenant(event, tenant))

    def job_events(self, job_id: str, tenant: str | None = TENANT, **query: str) -> Answer:
        event = with_job_id(load_event("apigw_list_job_events.json"), job_id)
        return self.call(self.status, as_tenant(with_query(event, **query), tenant))

    def cancel_job(self, job_id: str, tenant: str | None = TENANT) -> Answer:
        event = with_job_id(load_event("apigw_cancel_job.json"), job_id)
        return self.call(self.submit, as_tenant(event, tenant))

    def decide(
        self, job_id: str, approval_id: str, body: Any, tenant: str | None = TENANT
    ) -> Answer:
        event = with_body(load_event("apigw_decide_approval.json"), body)
        event["path"] = f"/v1/jobs/{job_id}/approvals/{approval_id}"
        event["requestContext"]["path"] = f"/prod{event['path']}"
        event["pathParameters"] = {"job_id": job_id, "approval_id": approval_id}
        return self.call(self.submit, as_tenant(event, tenant))

    def list_approvals(self, tenant: str | None = TENANT, **query: str) -> Answer:
        event = with_query(load_event("apigw_list_approvals.json"), **query)
        return self.call(self.status, as_tenant(event, tenant))


@pytest.fixture
def container(provisioned: Provisioned) -> Container:
    return Container(provisioned.settings)


@pytest.fixture
def api(container: Container) -> Api:
    return Api(container)

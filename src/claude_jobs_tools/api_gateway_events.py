"""Real-shaped API Gateway events: REST proxy requests and TOKEN authorizer requests.

The tests drive the handlers with these, and the local stack's HTTP front builds its events with
:func:`rest_event` so the handlers see exactly what API Gateway would send them. Resource
templates come from the definition table's routes (:mod:`claude_jobs.definitions`).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from claude_jobs.definitions import ROUTES

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_API_ID = "a1b2c3d4e5"
DEFAULT_STAGE = "prod"
DEFAULT_REGION = "us-east-1"


def match_resource(path: str) -> tuple[str, dict[str, str] | None]:
    """(resource template, path parameters) for a path, from the definition table's routes;
    `/{proxy+}` when none matches."""
    for route in ROUTES:
        found = route.match(path)
        if found is not None:
            return route.path, found or None
    return "/{proxy+}", {"proxy": path.lstrip("/")}


def rest_event(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: str | bytes | None = None,
    authorizer: Mapping[str, Any] | None = None,
    is_base64: bool | None = None,
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
    stage: str = DEFAULT_STAGE,
    api_id: str = DEFAULT_API_ID,
    account_id: str = DEFAULT_ACCOUNT,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) Lambda proxy event.

    - `body` as bytes is sent base64-encoded (`isBase64Encoded: true`), as API Gateway does for
      binary media types; as str it is sent as-is unless `is_base64` says otherwise.
    - `authorizer` is what a Lambda authorizer returned as context (e.g. `{"tenant_id": "t1",
      "key_id": "…"}`); `principalId` is set from its `tenant_id`. `None` = no authorizer ran.
    """
    moment = now or datetime.now(UTC)
    request_id = request_id or str(uuid.uuid4())
    resource, path_parameters = match_resource(path)
    hdrs = {"Host": f"{api_id}.execute-api.{DEFAULT_REGION}.amazonaws.com", **(headers or {})}
    hdrs.setdefault("X-Forwarded-For", source_ip)
    hdrs.setdefault("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}")
    if isinstance(body, bytes):
        body_text: str | None = base64.b64encode(body).decode()
        encoded = True if is_base64 is None else is_base64
    else:
        body_text = body
        encoded = bool(is_base64)
    request_context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": hdrs["Host"],
        "domainPrefix": api_id,
        "extendedRequestId": request_id[:16],
        "httpMethod": method,
        "identity": {
            "accessKey": None,
            "accountId": None,
            "caller": None,
            "cognitoAuthenticationProvider": None,
            "cognitoAuthenticationType": None,
            "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None,
            "principalOrgId": None,
            "sourceIp": source_ip,
            "user": None,
            "userAgent": hdrs.get("User-Agent", ""),
            "userArn": None,
        },
        "path": f"/{stage}{path}",
        "protocol": "HTTP/1.1",
        "requestId": request_id,
        "requestTime": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": int(moment.timestamp() * 1000),
        "resourceId": "abc123",
        "resourcePath": resource,
        "stage": stage,
    }
    if authorizer is not None:
        request_context["authorizer"] = {
            "principalId": str(authorizer.get("tenant_id", "")),
            "integrationLatency": 0,
            **authorizer,
        }
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": request_context,
        "body": body_text,
        "isBase64Encoded": encoded,
    }


def method_arn(
    method: str,
    path: str,
    *,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT,
    api_id: str = DEFAULT_API_ID,
    stage: str = DEFAULT_STAGE,
) -> str:
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{method}{path}"


def authorizer_event(authorization: str | None, method: str, path: str) -> dict[str, Any]:
    """A TOKEN authorizer event for a request carrying `Authorization: <authorization>`."""
    return {
        "type": "TOKEN",
        "authorizationToken": authorization,
        "methodArn": method_arn(method, path),
    }

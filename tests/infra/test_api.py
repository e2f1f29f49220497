"""The REST API: routes and auth, validation, stage logging, tracing, throttling, and
gateway responses rendered as problem+json."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

from claude_jobs.api.problems import TYPE_PREFIX, problem
from claude_jobs.definitions import ROUTES
from infra.components.api import ACCESS_LOG_FIELDS, GATEWAY_PROBLEMS
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.synth


def _render(template: str) -> object:
    """A gateway response template as API Gateway renders it, with sample context values."""
    rendered = template.replace("$context.error.messageString", json.dumps('Say "hi"'))
    rendered = rendered.replace("$context.requestId", "c0ffee-1")
    assert "$" not in rendered, rendered
    return json.loads(rendered)


def test_stage_has_logging_tracing_and_throttling(synth: Synthesized) -> None:
    config = synth.built.config
    synth.service.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": config.stage,
            "TracingEnabled": True,
            "AccessLogSetting": {"DestinationArn": Match.any_value(), "Format": Match.any_value()},
            "MethodSettings": [
                {
                    "HttpMethod": "*",
                    "ResourcePath": "/*",
                    "LoggingLevel": "ERROR",
                    "DataTraceEnabled": False,
                    "MetricsEnabled": True,
                    "ThrottlingRateLimit": config.api_throttle_rate_limit,
                    "ThrottlingBurstLimit": config.api_throttle_burst_limit,
                }
            ],
        },
    )
    synth.service.resource_count_is("AWS::ApiGateway::Account", 1)


def test_access_log_lines_are_json_with_request_and_tenant(synth: Synthesized) -> None:
    (stage,) = synth.service.find_resources("AWS::ApiGateway::Stage").values()
    fmt = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])
    assert fmt == ACCESS_LOG_FIELDS
    assert fmt["request_id"] == "$context.requestId"
    assert fmt["tenant_id"] == "$context.authorizer.tenant_id"
    assert not any("authorization" in v.lower() for v in fmt.values() if "header" in v.lower())


def test_health_is_public_and_every_other_method_uses_the_authorizer(
    synth: Synthesized,
) -> None:
    authorizers = synth.service.find_resources("AWS::ApiGateway::Authorizer")
    ((authorizer_id, authorizer),) = authorizers.items()
    assert authorizer["Properties"]["Type"] == "TOKEN"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 60
    assert re.match(
        authorizer["Properties"]["IdentityValidationExpression"], "Bearer cjk_abc_" + "x" * 43
    )
    assert not re.match(authorizer["Properties"]["IdentityValidationExpression"], "Basic dXNlcjpw")

    methods = synth.service.find_resources("AWS::ApiGateway::Method")
    public = [m for m in methods.values() if m["Properties"]["AuthorizationType"] == "NONE"]
    private = [m for m in methods.values() if m["Properties"]["AuthorizationType"] == "CUSTOM"]
    assert len(public) == len([r for r in ROUTES if not r.authorized])
    assert len(private) == len([r for r in ROUTES if r.authorized])
    for method in private:
        assert method["Properties"]["AuthorizerId"] == {"Ref": authorizer_id}


def test_routes_reach_the_right_functions(synth: Synthesized) -> None:
    resources = synth.service.find_resources("AWS::ApiGateway::Resource")
    paths = {i: r["Properties"]["PathPart"] for i, r in resources.items()}
    parents = {i: r["Properties"]["ParentId"].get("Ref") for i, r in resources.items()}

    def full_path(resource_id: str) -> str:
        parts = []
        current: str | None = resource_id
        while current in paths:
            parts.append(paths[current])
            current = parents[current]
        return "/" + "/".join(reversed(parts))

    where = {"query": "querystring", "header": "header"}  # API Gateway's names
    routes: dict[tuple[str, str], tuple[str, bool, str, set[str]]] = {}
    for method in synth.service.find_resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        uri = json.dumps(props["Integration"]["Uri"])
        target = re.search(r'"([A-Z][a-z]+)Function[0-9A-F]+"', uri)
        assert target and props["Integration"]["Type"] == "AWS_PROXY"
        routes[(props["HttpMethod"], full_path(props["ResourceId"]["Ref"]))] = (
            target.group(1).lower(),
            props["AuthorizationType"] == "CUSTOM",
            props["OperationName"],
            set(props["RequestParameters"]),
        )
    # Exactly the definition table's routes, each on the function it names
    assert routes == {
        (r.method, r.path): (
            r.function,
            r.authorized,
            r.operation,
            {f"method.request.path.{name}" for name in r.path_parameters}
            | {f"method.request.{where[p.location]}.{p.name}" for p in r.parameters}
            | ({"method.request.header.Authorization"} if r.authorized else set()),
        )
        for r in ROUTES
    }


def test_requests_are_validated(synth: Synthesized) -> None:
    validators = synth.service.find_resources("AWS::ApiGateway::RequestValidator")
    body = [i for i, v in validators.items() if v["Properties"]["ValidateRequestBody"]]
    assert len(body) == 1
    synth.service.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "RequestValidatorId": {"Ref": body[0]},
            "RequestModels": {"application/json": Match.any_value()},
        },
    )
    synth.service.has_resource_properties(
        "AWS::ApiGateway::Model",
        {"Schema": Match.object_like({"type": "object", "required": Match.absent()})},
    )
    for method in synth.service.find_resources("AWS::ApiGateway::Method").values():
        assert "RequestValidatorId" in method["Properties"]


def test_gateway_responses_are_problem_json(synth: Synthesized) -> None:
    """Given each response API Gateway makes itself, its body is an RFC 9457 problem whose
    status matches the response, with the request id, served as application/problem+json."""
    responses = synth.service.find_resources("AWS::ApiGateway::GatewayResponse")
    by_type = {r["Properties"]["ResponseType"]: r["Properties"] for r in responses.values()}
    required = {
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "THROTTLED",
        "REQUEST_TOO_LARGE",
        "BAD_REQUEST_BODY",
        "MISSING_AUTHENTICATION_TOKEN",
    }
    assert required <= set(by_type)
    assert len(by_type) == len(GATEWAY_PROBLEMS)
    for response_type, props in by_type.items():
        assert props["ResponseParameters"]["gatewayresponse.header.Content-Type"] == (
            "'application/problem+json'"
        )
        body = _render(props["ResponseTemplates"]["application/json"])
        assert isinstance(body, dict)
        assert set(body) == {"type", "title", "status", "detail", "request_id"}, response_type
        assert body["status"] == int(props["StatusCode"]), response_type
        assert body["request_id"] == "c0ffee-1"
        assert body["type"].startswith(TYPE_PREFIX), response_type
    assert by_type["THROTTLED"]["StatusCode"] == "429"
    assert by_type["THROTTLED"]["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
    assert by_type["REQUEST_TOO_LARGE"]["StatusCode"] == "413"
    assert by_type["UNAUTHORIZED"]["StatusCode"] == "401"
    assert by_type["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    assert by_type["UNAUTHORIZED"]["ResponseParameters"][
        "gatewayresponse.header.WWW-Authenticate"
    ] == "'{}'".format(problem(401, "x").headers["WWW-Authenticate"])


def test_gateway_problems_look_like_the_functions_problems(synth: Synthesized) -> None:
    """Given a 401 from API Gateway and one from a function, a client sees the same type,
    title and status."""
    responses = synth.service.find_resources("AWS::ApiGateway::GatewayResponse")
    (unauthorized,) = [
        r["Properties"]
        for r in responses.values()
        if r["Properties"]["ResponseType"] == "UNAUTHORIZED"
    ]
    gateway = _render(unauthorized["ResponseTemplates"]["application/json"])
    function = problem(401, "x", code="unauthorized").body("c0ffee-1")
    assert isinstance(gateway, dict)
    assert {k: gateway[k] for k in ("type", "title", "status")} == {
        k: function[k] for k in ("type", "title", "status")
    }


def test_the_approval_routes_reach_submit_and_status(synth: Synthesized) -> None:
    """Approvals (issue 23): the decision is a write (the submit function: UpdateItem on the
    jobs table, SendMessage on the queue); the list is a read (the status function)."""
    served = {}
    for method in synth.service.find_resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["OperationName"] in ("decideApproval", "listApprovals"):
            uri = json.dumps(props["Integration"]["Uri"])
            target = re.search(r'"([A-Z][a-z]+)Function[0-9A-F]+"', uri)
            assert target is not None
            served[props["OperationName"]] = (props["HttpMethod"], target.group(1))
            assert props["AuthorizationType"] == "CUSTOM"
    assert served == {"decideApproval": ("POST", "Submit"), "listApprovals": ("GET", "Status")}

"""Every reader of the definition table derives from it: the API functions' routes, the
OpenAPI document, the sample events and the API Gateway event builder. (The CDK app's
functions and methods: tests/infra; the local stack and its front: test_local_runtime and
tests/integration/test_local_front.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from claude_jobs.api.app import ApiFunction
from claude_jobs.definitions import FUNCTIONS, POWERTOOLS_ENV, ROUTES, Route
from claude_jobs.settings import Settings
from claude_jobs_tools.api_gateway_events import match_resource, rest_event
from claude_jobs_tools.openapi import document
from tests.events import EVENTS
from tests.lambda_context import lambda_context

ROOT = Path(__file__).resolve().parents[2]


def _sample_path(route: Route) -> str:
    return re.sub(r"\{\w+\}", "p-1", route.path)


def test_routes_are_unique_and_served_by_defined_functions() -> None:
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)
    assert len({r.operation for r in ROUTES}) == len(ROUTES)
    assert {r.function for r in ROUTES} <= set(FUNCTIONS)


def test_every_function_has_its_code_and_reads_only_known_variables() -> None:
    settings = {info.alias for info in Settings.model_fields.values() if info.alias}
    for function in FUNCTIONS.values():
        assert (ROOT / "functions" / function.name / f"{function.handler_module}.py").is_file()
        # What the local stack sets from the settings (or Powertools' own), as CDK does
        assert set(function.environment) <= settings | set(POWERTOOLS_ENV), function.name


@pytest.mark.parametrize("name", sorted({r.function for r in ROUTES}))
def test_an_api_function_answers_exactly_its_routes_of_the_table(name: str) -> None:
    # Given the API function as its handler module builds it
    function = ApiFunction(name)
    for route in ROUTES:
        # When a request on any route of the API reaches it (without a tenant: no job is read)
        response = function.handler(
            rest_event(route.method, _sample_path(route)), lambda_context(name)
        )
        # Then it routes those the table gives it (health answers, the others want a tenant),
        # and knows no other
        body = json.loads(response["body"])
        if route.function == name:
            # (GitHub events want their signature: 401 without it, as without an API key)
            wants = route.authorized or route.operation == "githubEvent"
            assert response["statusCode"] == (401 if wants else 200), route
        else:
            assert (response["statusCode"], body["detail"]) == (404, "No such resource."), route


def test_the_openapi_document_has_exactly_the_tables_routes() -> None:
    paths = document()["paths"]
    documented = {
        (method.upper(), path, op["operationId"], op.get("security") != [])
        for path, ops in paths.items()
        for method, op in ops.items()
    }
    assert documented == {(r.method, r.path, r.operation, r.authorized) for r in ROUTES}
    for route in ROUTES:
        operation = paths[route.path][route.method.lower()]
        assert operation["summary"] == route.summary
        names = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
        assert names == {("path", n) for n in route.path_parameters} | {
            (p.location, p.name) for p in route.parameters
        }
        assert ("requestBody" in operation) == route.json_body


def test_the_sample_events_are_the_tables_routes() -> None:
    samples = {}
    for path in sorted(EVENTS.glob("apigw_*.json")):
        event = json.loads(path.read_text())
        samples[(event["httpMethod"], event["resource"])] = event
        # And each sample's parameters are what API Gateway derives from its path
        route = next(
            r for r in ROUTES if (r.method, r.path) == (event["httpMethod"], event["resource"])
        )
        assert (route.match(event["path"]) or None) == event["pathParameters"], path.name
    assert set(samples) == {(r.method, r.path) for r in ROUTES}


def test_built_events_name_the_tables_resources() -> None:
    for route in ROUTES:
        path = _sample_path(route)
        assert match_resource(path) == (route.path, route.match(path) or None)
        assert rest_event(route.method, path)["resource"] == route.path
    assert match_resource("/v2/nothing")[0] == "/{proxy+}"

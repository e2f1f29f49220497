"""The OpenAPI document: complete, self-consistent, and the committed file is current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from claude_jobs_tools.openapi import document

ROOT = Path(__file__).resolve().parents[2]


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_every_route_and_contract_status_is_documented() -> None:
    doc = document()
    paths = doc["paths"]
    assert set(paths["/v1/jobs"]["post"]["responses"]) >= {
        "202",
        "401",
        "409",
        "413",
        "422",
        "429",
        "503",
    }
    assert set(paths["/v1/jobs/{job_id}"]["get"]["responses"]) >= {
        "200",
        "304",
        "401",
        "404",
        "422",
    }
    assert set(paths["/v1/jobs"]["get"]["responses"]) >= {"200", "401", "422"}
    assert set(paths["/v1/jobs/{job_id}/cancel"]["post"]["responses"]) >= {"202", "404"}
    assert paths["/v1/health"]["get"]["security"] == []


def test_every_reference_resolves() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas


def test_the_request_schema_rejects_unknown_fields() -> None:
    request = document()["components"]["schemas"]["JobRequest"]
    assert request["additionalProperties"] is False
    assert request["required"] == ["prompt"]


def test_the_committed_openapi_json_is_current() -> None:
    # `make openapi` regenerates it; this fails when a model changed and it was not rerun.
    committed = json.loads((ROOT / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(document()))


def test_the_document_states_the_deployment_bounds_the_api_enforces() -> None:
    # Given a default deployment's settings
    from claude_jobs.settings import Settings

    settings = Settings()
    request = document()["components"]["schemas"]["JobRequest"]["properties"]
    # Then the longest job and the budget cap it enforces are the document's bounds (a
    # schema-valid request is never refused for them)
    assert request["timeout_seconds"]["maximum"] == settings.max_job_seconds
    budget = next(o for o in request["max_budget_usd"]["anyOf"] if o.get("type") == "number")
    assert budget["maximum"] == settings.max_budget_usd_cap

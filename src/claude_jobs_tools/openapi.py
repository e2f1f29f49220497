"""The OpenAPI 3.1 document of HTTP API v1, generated from the pydantic models.

    python -m claude_jobs_tools.openapi > openapi.json     # what `make openapi` does

The routes validate with the same models (see :mod:`claude_jobs.api.routes`), so the document
and the behaviour cannot drift apart on bodies; methods, paths, operation ids, summaries,
parameters and security come from the definition table (:mod:`claude_jobs.definitions`), as
the API's routes do; parameter schemas and statuses are declared here.
Nothing here runs when a function starts: it is built only when asked for.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from claude_jobs import __version__
from claude_jobs.api.problems import PROBLEM_CONTENT_TYPE, TYPE_PREFIX
from claude_jobs.api.routes import POLL_AFTER_SECONDS
from claude_jobs.approval_models import ApprovalList, DecisionRequest
from claude_jobs.definitions import ROUTES, Route
from claude_jobs.job_service import (
    EVENTS_PAGE_SIZE,
    IDEMPOTENCY_KEY_MAX,
    MAX_EVENT_CURSOR,
    MAX_PAGE_SIZE,
    MAX_WAIT_SECONDS,
)
from claude_jobs.models import (
    MAX_BODY_BYTES,
    MAX_DOCUMENT_DEPTH,
    MAX_EVENTS_PER_JOB,
    EventPage,
    JobList,
    JobRequest,
    JobView,
    Problem,
    SessionView,
    SubmitResponse,
    UploadRequest,
    UploadResponse,
)
from claude_jobs.settings import Settings

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": _ref(Problem)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _json(model: type[BaseModel], description: str, **headers: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _json_object(description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"status": _STR, "reason": _STR, "job_id": _STR},
        "required": ["status", "reason"],
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_RETRY_AFTER = {"description": "Seconds to wait before trying again", "schema": _INT}
_ETAG = {"description": "Version of the job; send it back in If-None-Match", "schema": _STR}

#: What a submitted job's answer leads to (OpenAPI links: clients and stateful testers).
_JOB_LINKS = {
    operation: {"operationId": operation, "parameters": {"job_id": "$response.body#/job_id"}}
    for operation in ("getJob", "listJobEvents", "cancelJob")
}

_COMMON_ERRORS = {
    "401": _problem(
        "Missing, invalid, revoked or expired API key",
        {"WWW-Authenticate": {"schema": _STR}},
    ),
    "429": _problem("Throttled", {"Retry-After": _RETRY_AFTER}),
}


#: Each parameter a route reads, by name: its schema (and description).
_PARAMETERS: dict[str, dict[str, Any]] = {
    "job_id": {"schema": _STR},
    "approval_id": {"schema": _STR, "description": "The job's `pending_approval.approval_id`"},
    "session_id": {"schema": _STR, "description": "A job's `session_id`"},
    "Idempotency-Key": {
        "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX}
    },
    "limit": {"schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20}},
    "next_token": {
        "description": "The `next_token` of the previous page: an opaque cursor only the API "
        "mints; any other value answers 422",
        "schema": _STR,
    },
    "wait": {
        "description": "Seconds to wait (long poll): for a terminal status or "
        "`awaiting_approval` (a job), for a newer event or a terminal status (its events)",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
    },
    "If-None-Match": {"schema": _STR},
    "X-Hub-Signature-256": {
        "description": "`sha256=` and the HMAC-SHA256 of the raw body with the GitHub App's "
        "webhook secret",
        "schema": _STR,
    },
    "X-GitHub-Event": {"description": "`issue_comment`, `issues`, ...", "schema": _STR},
    "X-GitHub-Delivery": {
        "description": "The delivery's id: a replayed one starts nothing",
        "schema": _STR,
    },
    "after": {
        "description": "A `next_cursor` of an earlier answer: only newer events (default 0: "
        "from the first)",
        "schema": {"type": "string", "pattern": r"^\d{1,6}$", "default": "0"},
    },
}

#: What each operation answers (and anything else it documents), by operationId. Its method,
#: path, summary, parameters and security are the definition table's.
_OPERATIONS: dict[str, dict[str, Any]] = {
    "submitJob": {
        "description": (
            f"Bodies over {MAX_BODY_BYTES // 1024} KiB answer 413. An Idempotency-Key replays "
            "the first job for 24 h (same body) or answers 409 (another body)."
        ),
        "requestBody": {
            "required": True,
            "description": "JSON of at most 256 KiB (UTF-8), nested at most "
            f"{MAX_DOCUMENT_DEPTH + 1} levels (free-form documents inside it, such "
            f"as `output_schema`, at most {MAX_DOCUMENT_DEPTH}), finite numbers of "
            "any magnitude and precision; no other limits on JSON values.",
            "content": {"application/json": {"schema": _ref(JobRequest)}},
        },
        "responses": {
            "202": {
                **_json(
                    SubmitResponse,
                    "Queued (or the first job, for a replayed Idempotency-Key)",
                    Location={"description": "The job's URL path", "schema": _STR},
                ),
                "links": _JOB_LINKS,
            },
            **_COMMON_ERRORS,
            "404": _problem(
                "`session_not_found`: the `session_id` is unknown, deleted or another tenant's"
            ),
            "409": _problem(
                "Idempotency-Key reused with another body, or `session_busy`: the session "
                "has a job queued or running"
            ),
            "413": _problem("Body over 256 KiB"),
            "422": _problem(
                "Invalid request; `errors` lists each field (`inputs`: an upload unknown to "
                "this tenant, expired, not uploaded yet, of another size than declared, or "
                "whose filename another input has)"
            ),
            "429": _problem(
                "Throttled, or `tenant_limit`: the tenant already has as many "
                "pending (queued or running) jobs as the deployment allows "
                "(`TENANT_MAX_PENDING`); submit again after Retry-After",
                {"Retry-After": _RETRY_AFTER},
            ),
            "503": _problem(
                "The job could not be queued (it was failed); retry",
                {"Retry-After": _RETRY_AFTER},
            ),
        },
    },
    "createUpload": {
        "description": (
            "Creates an upload for one input file of later jobs: PUT the file's exact bytes to "
            "`upload_url` with `method` and exactly `headers` (the signature binds the size) "
            "before `upload_url_expires_at`, then list `upload_id` in a job's `inputs` before "
            "`expires_at` (24 h). Only the creating tenant's jobs can use it. `size_bytes` is "
            "capped by the deployment (`UPLOAD_MAX_BYTES`, default 100 MiB)."
        ),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(UploadRequest)}},
        },
        "responses": {
            "201": _json(UploadResponse, "The upload, and where to PUT its bytes"),
            **_COMMON_ERRORS,
            "413": _problem("Body over 256 KiB"),
            "422": _problem(
                "Invalid request: an unsafe filename, a size over the cap; `errors` lists each"
            ),
        },
    },
    "listJobs": {
        "responses": {
            "200": _json(JobList, "A page of jobs"),
            **_COMMON_ERRORS,
            "422": _problem("Invalid limit or next_token"),
        },
    },
    "getJob": {
        "responses": {
            "200": _json(
                JobView,
                f"The job. Non-terminal answers carry Retry-After ({POLL_AFTER_SECONDS} s).",
                ETag=_ETAG,
                **{"Retry-After": _RETRY_AFTER},
            ),
            "304": {
                "description": "Unchanged since the ETag sent in If-None-Match",
                "headers": {"ETag": _ETAG},
            },
            **_COMMON_ERRORS,
            "404": _problem("No such job (or another tenant's)"),
            "422": _problem("Invalid wait"),
        },
    },
    "listJobEvents": {
        "description": (
            "Progress events in `seq` order: `status`, `text` (at most 2 KiB), `tool_use` "
            "(input at most 512 chars), `tool_result`, `usage` (cumulative). At most "
            f"{EVENTS_PAGE_SIZE} per answer; pass `next_cursor` as `after` for the next. "
            "`done` is true once the job is terminal and every event has been returned. "
            f"Secrets are scrubbed; at most {MAX_EVENTS_PER_JOB} events a job are kept. "
            "Answers not `done` carry Retry-After."
        ),
        "responses": {
            "200": _json(EventPage, "Events after the cursor", **{"Retry-After": _RETRY_AFTER}),
            **_COMMON_ERRORS,
            "404": _problem("No such job (or another tenant's)"),
            "422": _problem(f"Invalid after (a cursor up to {MAX_EVENT_CURSOR}) or wait"),
        },
    },
    "cancelJob": {
        "responses": {
            "202": _json(JobView, "The job as it is now", ETag=_ETAG),
            **_COMMON_ERRORS,
            "404": _problem("No such job (or another tenant's)"),
        },
    },
    "decideApproval": {
        "description": (
            "Decides the call the job waits on (`pending_approval`): `allow` runs it, `deny` "
            "never does (the agent sees a tool error carrying `message`). An "
            "`AskUserQuestion` call is allowed with `answers`. The job is queued again and "
            "resumes its session; the time it waited does not count against "
            "`timeout_seconds`."
        ),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(DecisionRequest)}},
        },
        "responses": {
            "200": _json(JobView, "The job, queued again", ETag=_ETAG),
            **_COMMON_ERRORS,
            "404": _problem("No such job (or another tenant's)"),
            "409": _problem(
                "`approval_conflict`: the job waits for no decision (already decided, "
                "cancelled, ended), or `approval_id` is not its pending approval, or it expired"
            ),
            "413": _problem("Body over 256 KiB"),
            "422": _problem(
                "Invalid body; `errors` lists each field (`answers` only for an "
                "`AskUserQuestion` call, which needs them to be allowed)"
            ),
        },
    },
    "listApprovals": {
        "description": "The tenant's jobs that wait for a decision, oldest request first.",
        "responses": {
            "200": _json(ApprovalList, "A page of pending approvals"),
            **_COMMON_ERRORS,
            "422": _problem("Invalid limit or next_token"),
        },
    },
    "getSession": {
        "responses": {
            "200": _json(SessionView, "The session and its jobs, oldest first"),
            **_COMMON_ERRORS,
            "404": _problem("`session_not_found` (unknown, deleted, or another tenant's)"),
        },
    },
    "deleteSession": {
        "description": "Removes the session's transcript; the session can no longer be read "
        "or continued (404).",
        "responses": {
            "204": {"description": "Deleted"},
            **_COMMON_ERRORS,
            "404": _problem("`session_not_found` (unknown, deleted, or another tenant's)"),
            "409": _problem("`session_busy`: a job of the session is queued or running"),
        },
    },
    "githubEvent": {
        "description": "GitHub's App webhook (docs/github.md#github-events): a comment "
        "mentioning the deployment's handle, or an issue labeled with its label, by a "
        "collaborator with write access, starts a job on the repository for the tenant of the "
        "installation. Anything else is answered 200 with the reason it was ignored. The body "
        "is GitHub's JSON payload as delivered (its raw bytes are what the signature covers).",
        "responses": {
            "200": _json_object("Ignored: `{status: ignored, reason}`"),
            "202": _json_object("A job was started: `{status: started, reason, job_id}`"),
            "400": _problem("The body is not a JSON object"),
            "401": _problem("The signature is missing or wrong"),
            "413": _problem("The body is larger than 256 KiB"),
        },
    },
    "health": {
        "responses": {
            "200": {
                "description": "The API answers",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"status": {"const": "ok"}},
                            "required": ["status"],
                        }
                    }
                },
            }
        },
    },
}


def _operation(route: Route) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, **_PARAMETERS[name]}
        for name in route.path_parameters
    ] + [
        {"name": p.name, "in": p.location, "required": False, **_PARAMETERS[p.name]}
        for p in route.parameters
    ]
    operation: dict[str, Any] = {"operationId": route.operation, "summary": route.summary}
    details = dict(_OPERATIONS[route.operation])
    if "description" in details:
        operation["description"] = details.pop("description")
    if parameters:
        operation["parameters"] = parameters
    if not route.authorized:
        operation["security"] = []
    return {**operation, **details}


def paths() -> dict[str, dict[str, Any]]:
    """Every route of the definition table, and nothing else."""
    undocumented = {r.operation for r in ROUTES} ^ set(_OPERATIONS)
    if undocumented:
        raise ValueError(f"operations not both routed and documented: {sorted(undocumented)}")
    found: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        found.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return found


def _state_deployment_bounds(request: dict[str, Any]) -> None:
    """What the API enforces per deployment, as a default deployment enforces it: the tools it
    permits (a permission rule in parentheses may follow a tool's name), its MCP servers (none),
    its longest job (`max_job_seconds`) and its budget cap."""
    settings = Settings()
    names = "|".join(re.escape(tool) for tool in sorted(settings.permitted_tools))
    tools = request["allowed_tools"]
    tools["items"] = {
        "type": "string",
        "maxLength": 256,
        "pattern": rf"^(?:{names})(?:\([^()]*\))?$",
    }
    tools["uniqueItems"] = True
    # Approvals: rules in the same syntax (each rule's tool must also be in `allowed_tools`,
    # which no schema can say).
    request["approvals"]["items"] = dict(tools["items"])
    request["approvals"]["uniqueItems"] = True
    tools["description"] += (
        f" This document states a default deployment's set: {', '.join(settings.permitted_tools)}."
    )
    # MCP servers: a default deployment allows none (its MCP_ALLOWED_URLS is empty).
    if not settings.mcp_allowed_urls:
        servers = request["mcp_servers"]
        servers["maxItems"] = 0
        servers["description"] += (
            " This document states a default deployment's bound: no allowlist, so no server."
        )
    timeout = request["timeout_seconds"]
    timeout["maximum"] = settings.max_job_seconds
    timeout["description"] += (
        f" This document states a default deployment's: {settings.max_job_seconds}."
    )
    budget = request["max_budget_usd"]
    number = next(option for option in budget["anyOf"] if option.get("type") == "number")
    number["maximum"] = settings.max_budget_usd_cap
    budget["description"] = (
        f"≤ the deployment's cap (this document states a default deployment's: "
        f"{settings.max_budget_usd_cap:g})"
    )


def _state_upload_bounds(request: dict[str, Any]) -> None:
    """Files: the upload size cap, as a default deployment enforces it."""
    size = request["size_bytes"]
    size["maximum"] = Settings().upload_max_bytes
    size["description"] = (
        "Exact size of the file in bytes; at most the deployment's cap (`UPLOAD_MAX_BYTES`; "
        f"this document states a default deployment's: {Settings().upload_max_bytes})"
    )


def document() -> dict[str, Any]:
    """The OpenAPI document as a dict."""
    _, defs = models_json_schema(
        [
            (JobRequest, "validation"),
            (SubmitResponse, "serialization"),
            (UploadRequest, "validation"),
            (UploadResponse, "serialization"),
            (JobView, "serialization"),
            (JobList, "serialization"),
            (EventPage, "serialization"),
            (SessionView, "serialization"),
            (DecisionRequest, "validation"),
            (ApprovalList, "serialization"),
            (Problem, "serialization"),
        ],
        ref_template=REF,
    )
    schemas = defs["$defs"]
    _state_deployment_bounds(schemas["JobRequest"]["properties"])
    _state_upload_bounds(schemas["UploadRequest"]["properties"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "claude-jobs",
            "version": __version__,
            "description": (
                "Claude Code as a serverless job service. Every error is an RFC 9457 problem "
                f"(`{PROBLEM_CONTENT_TYPE}`) whose `type` is `{TYPE_PREFIX}<code>`."
            ),
        },
        "security": [{"apiKey": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <api key>` (see `claude-jobs keys`)",
                }
            },
            "schemas": dict(sorted(schemas.items())),
        },
    }


def main() -> None:
    print(json.dumps(document(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

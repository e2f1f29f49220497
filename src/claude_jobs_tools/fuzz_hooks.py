"""schemathesis hooks for `make fuzz` and the e2e fuzz pass: each one narrow, with its reason.

Loaded by :mod:`claude_jobs_tools.fuzz` (SCHEMATHESIS_HOOKS). Nothing else uses them.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.hooks import HookContext


@schemathesis.hook
def filter_failure(context: HookContext, failure: Any, case: Any, response: Any) -> bool:
    """GET /v1/jobs (or /v1/approvals)?next_token=<made up>: a 422 is the contract, not a
    rejected valid request.

    `next_token` is an opaque cursor that only the API mints (it names the tenant's last key,
    so a page cannot be forged); no schema can describe which strings it minted. Only this
    failure is dropped: a server error or a schema mismatch on such a request still counts,
    and so does a 422 for any other reason."""
    return not (
        failure.code == "ST202"
        and case.operation.label in ("GET /v1/jobs", "GET /v1/approvals")
        and (case.query or {}).get("next_token")
        and response.status_code == 422
        and '"loc":["query","next_token"]' in response.text.replace(" ", "")
    )


def _errors(response: Any) -> list[dict[str, Any]]:
    import json

    try:
        body = json.loads(response.text)
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return errors if isinstance(errors, list) else []


@schemathesis.hook("filter_failure")
def files_filter_failure(context: HookContext, failure: Any, case: Any, response: Any) -> bool:
    """Files (issue 13), two 422s that are the contract, not rejected valid requests:

    - POST /v1/jobs whose `inputs` name uploads that do not exist: upload ids are minted by
      `POST /v1/uploads` for one tenant (like `next_token`); no schema can say which exist.
      Only when every error is such an input.
    - POST /v1/uploads whose `filename` is over 255 UTF-8 bytes: JSON Schema counts characters
      (the pattern states every other filename rule), and Linux counts bytes.
    A server error or a schema mismatch on such a request still counts."""
    if failure.code != "ST202" or response.status_code != 422:
        return True
    errors = _errors(response)
    if not errors:
        return True
    label = case.operation.label
    if label == "POST /v1/jobs":
        return not all(
            e.get("loc", [])[:2] == ["body", "inputs"]
            and str(e.get("msg", "")).startswith("no upload")
            for e in errors
        )
    if label == "POST /v1/uploads":
        return not all(
            e.get("loc") == ["body", "filename"] and "bytes as UTF-8" in str(e.get("msg", ""))
            for e in errors
        )
    return True


@schemathesis.hook("filter_failure")
def approvals_filter_failure(context: HookContext, failure: Any, case: Any, response: Any) -> bool:
    """Approvals (issue 23): POST /v1/jobs whose `approvals` name a rule for a tool that is not
    in its `allowed_tools`: a 422 by the contract ("the tool must be allowed too"), a rule
    across two fields that no schema can state. Only when every error is that one; a server
    error or a schema mismatch on such a request still counts."""
    if (
        failure.code != "ST202"
        or response.status_code != 422
        or case.operation.label != "POST /v1/jobs"
    ):
        return True
    errors = _errors(response)
    return not errors or not all("is not in allowed_tools" in str(e.get("msg", "")) for e in errors)


#: Header parameters of the document and their length bounds (`openapi.json`).
HEADER_LENGTHS = {"Idempotency-Key": (1, 128)}


@schemathesis.hook("filter_failure")
def header_whitespace_filter_failure(
    context: HookContext, failure: Any, case: Any, response: Any
) -> bool:
    """An "invalid" header accepted because HTTP never delivered what made it invalid: the
    whitespace before a field value is not part of it (RFC 9110, 5.5), so a server — API
    Gateway, the local front — gets `Idempotency-Key: <tab>` + 128 characters as the 128
    characters, which are valid. Dropped only when every header parameter, as HTTP delivers it,
    is within its bounds (the server validated the rest of the request: it accepted it)."""
    if failure.code != "ST201":
        return True
    headers = case.headers or {}
    padded = False
    for name, (shortest, longest) in HEADER_LENGTHS.items():
        value = headers.get(name)
        if not isinstance(value, str):
            continue
        delivered = value.lstrip(" \t")
        padded = padded or delivered != value
        if not shortest <= len(delivered) <= longest:
            return True
    return not padded


def _deployment_bound(loc: list[Any]) -> bool:
    """A request field whose validity depends on the deployment or on Git's ref-name rules."""
    return (
        loc == ["body", "repository", "url"]
        or loc == ["body", "repository", "ref"]
        or loc == ["body", "pull_request", "base"]
        or (len(loc) == 4 and loc[:2] == ["body", "mcp_servers"] and loc[3] == "url")
    )


@schemathesis.hook("filter_failure")
def remote_urls_filter_failure(
    context: HookContext, failure: Any, case: Any, response: Any
) -> bool:
    """Repositories and MCP servers (issues 24, 25): POST /v1/jobs whose `repository.url` is not
    a repository of the deployment's Git host (`GITHUB_GIT_URL`), whose MCP server URL is off
    its `MCP_ALLOWED_URLS`, or whose ref breaks one of Git's ref-name rules that a pattern cannot
    state (`..`, a `.lock` ending), or `pull_request` without `repository`: a 422 by the
    contract, decided by the deployment's settings or across two fields,
    which no schema of the API can state. Only when every error is such a field; a server error
    or a schema mismatch on such a request still counts."""
    if (
        failure.code != "ST202"
        or response.status_code != 422
        or case.operation.label != "POST /v1/jobs"
    ):
        return True
    errors = _errors(response)
    return not errors or not all(
        _deployment_bound(list(e.get("loc", []))) or _needs_another_field(e) for e in errors
    )


def _needs_another_field(error: dict[str, Any]) -> bool:
    """An option given without the one it needs (`pull_request` without `repository`): a rule
    across two fields, which the schema does not state."""
    return error.get("loc") == ["body"] and str(error.get("msg", "")).endswith(
        "pull_request needs a repository"
    )

"""A job's run options, as `Client.submit` takes them.

Generated from `claude_jobs.job_options.JobOptions` by `make client-options`: do not edit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict


class JobOptions(TypedDict, total=False):
    """Options of `POST /v1/jobs`; left out (or None): the API's default."""

    #: Tools the agent may use; `[]` = none. Each must be in the deployment's permitted set. A
    #: permission rule such as `Bash(git status:*)` is accepted when its tool is permitted.
    allowed_tools: Sequence[str] | None
    #: 1-100 (API default 25).
    max_turns: int | None
    #: The job's deadline, from its first start: at most the deployment's `max_job_seconds`
    #: (default 14,400). A job longer than one worker invocation runs in segments (see
    #: `segments`).
    timeout_seconds: int | None
    #: ≤ the deployment's cap
    max_budget_usd: float | None
    #: Defaults to the deployment's model
    model: str | None
    #: A JSON Schema object; the result then carries `structured`. Any valid JSON within the
    #: body's size, nested at most 64 levels; it is kept and returned exactly as sent.
    output_schema: Mapping[str, Any] | None
    #: Permission rules (the `allowed_tools` syntax, e.g. `Bash(git push:*)`) whose matching
    #: calls wait for a person's decision: the job becomes `awaiting_approval` and resumes once
    #: answered. Each rule's tool must be allowed.
    approvals: Sequence[str] | None
    #: How long a call may wait for a decision; unanswered by then, the job ends `failed` with
    #: `error.code = approval_expired`. Waiting does not count against `timeout_seconds`.
    approval_timeout_seconds: int | None
    #: Remote MCP servers (streamable HTTP) for the job. Each URL must start with one of the
    #: deployment's `MCP_ALLOWED_URLS` prefixes (otherwise 422 naming the server); `credential`
    #: names an entry of the tenant's vault, sent to the server as a bearer token by the worker,
    #: never seen by the agent. A job gets exactly the tools it names as `mcp__<name>__<tool>`
    #: in `allowed_tools` (and `approvals` may name them).
    mcp_servers: Sequence[Mapping[str, Any]] | None
    #: A repository of the deployment's Git host, cloned into the working directory before the
    #: agent starts (the tenant's GitHub credential is used by the worker and never reaches the
    #: agent). An unknown repository, or a tenant without a credential, ends the job
    #: `repository_unavailable`; one too large, `repository_too_large`.
    repository: Mapping[str, Any] | None
    #: When the job succeeds with changes, the worker (never the agent) commits them, pushes
    #: branch `claude-jobs/<job_id>` and opens a pull request; the job then shows
    #: `pull_request`, or `pull_request_skipped: "no_changes"`. Needs `repository`.
    pull_request: Mapping[str, Any] | None


#: The options' names, in the API's order.
OPTION_NAMES = (
    "allowed_tools",
    "max_turns",
    "timeout_seconds",
    "max_budget_usd",
    "model",
    "output_schema",
    "approvals",
    "approval_timeout_seconds",
    "mcp_servers",
    "repository",
    "pull_request",
)

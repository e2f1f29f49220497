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


#: The options' names, in the API's order.
OPTION_NAMES = (
    "allowed_tools",
    "max_turns",
    "timeout_seconds",
    "max_budget_usd",
    "model",
    "output_schema",
)

"""A job's run options: the one list, and what is derived from it.

Each field of :class:`JobOptions` carries a :class:`RunOption` in its `Annotated` metadata: how it
reaches the SDK's `ClaudeAgentOptions` (:func:`sdk_arguments`), whether it is part of a warm CLI's
profile (:func:`warm_fields`, `worker/warm.py`), its CLI flag and help (`claude-jobs submit`), and
an example value the parity test sets. The client's typed options are generated from it
(`make client-options`). Adding an option: docs/adding-a-job-option.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from .approval_models import (
    DEFAULT_APPROVAL_TIMEOUT_SECONDS,
    MAX_APPROVAL_RULES,
    MAX_APPROVAL_TIMEOUT_SECONDS,
    MIN_APPROVAL_TIMEOUT_SECONDS,
)
from .mcp_models import MAX_MCP_SERVERS, McpServer, check_mcp, is_mcp_tool
from .model_base import Model
from .repository_models import PullRequestSpec, RepositorySpec

#: No deployment lets a job run longer than this (its `max_job_seconds` is at most this).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
#: Free-form JSON documents (an output schema, a structured result) nest at most this deep.
MAX_DOCUMENT_DEPTH = 64

_TOOL_RE = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z0-9_]*(?:__[A-Za-z0-9_-]+)*)(?:\((?P<rule>[^()]*)\))?$"
)
_MODEL_RE = r"^[A-Za-z0-9][A-Za-z0-9._:@\[\]/-]{0,127}$"


def json_depth(value: Any) -> int:
    """Levels of objects and arrays in a JSON value (a scalar: 0)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def tool_base_name(tool: str) -> str:
    """`Bash(git status:*)` → `Bash`: the tool a permission rule applies to."""
    match = _TOOL_RE.match(tool)
    return match.group("name") if match else tool


@dataclass(frozen=True)
class Excluded:
    """An option deliberately not wired to a target, and why (the parity test lists these)."""

    reason: str


#: How an option becomes `ClaudeAgentOptions` arguments: the argument's name (the value as
#: is), or a function of the value returning the arguments.
SdkArgument = str | Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class RunOption:
    """What a job option is wired to.

    `sdk`: its `ClaudeAgentOptions` argument(s). `warm`: `"profile"` — part of a warm CLI's
    profile (a warm CLI started with another value is not used); `"cold"` — a job that sets it
    carries its own data on the CLI's command line and is never warm-started. `help` and
    `flag` (default `--<name>`): `claude-jobs submit`'s option. `example`: a valid value other
    than the default (the parity test's). `needs`: options that must be set with it."""

    sdk: SdkArgument | Excluded
    warm: Literal["profile", "cold"] | Excluded
    help: str
    example: Any
    flag: str | None = None
    #: Options a job must also set for this one to be valid (the parity test sets them too).
    needs: tuple[str, ...] = ()


def _tools(tools: list[str]) -> dict[str, Any]:
    # `tools` offers each permitted base tool once; `allowed_tools` keeps the rules.
    # MCP servers' tools are not the CLI's own: their servers offer them (worker/mcp_broker.py).
    bases: list[str] = []
    for tool in tools:
        if is_mcp_tool(tool):
            continue
        base = tool_base_name(tool)
        if base not in bases:
            bases.append(base)
    return {"tools": bases, "allowed_tools": list(tools)}


def _output_format(schema: dict[str, Any] | None) -> dict[str, Any]:
    return {"output_format": None if schema is None else {"type": "json_schema", "schema": schema}}


class JobOptions(Model):
    """Everything about a job's run except the prompt texts and metadata."""

    model_config = ConfigDict(extra="forbid")

    allowed_tools: Annotated[
        list[str],
        RunOption(
            sdk=_tools,
            warm="profile",
            flag="--tools",
            help="Tools the agent may use: --tools Read,Grep or repeat the option; "
            "--tools '' for none. Default: the API's (Read, Glob, Grep).",
            example=["Bash(git status:*)", "Read"],
        ),
    ] = Field(
        default_factory=lambda: ["Read", "Glob", "Grep"],
        max_length=64,
        description="Tools the agent may use; `[]` = none. Each must be in the deployment's "
        "permitted set. A permission rule such as `Bash(git status:*)` is accepted when its "
        "tool is permitted.",
    )
    max_turns: Annotated[
        int,
        RunOption(sdk="max_turns", warm="profile", help="1-100 (API default 25).", example=7),
    ] = Field(25, ge=1, le=100)
    timeout_seconds: Annotated[
        int,
        RunOption(
            sdk=Excluded("the worker's deadline (segments.plan): it stops the run"),
            warm=Excluded("not on the CLI's command line"),
            flag="--timeout",
            help="Job timeout in seconds, 10 to the deployment's max_job_seconds (default "
            "14,400; API default 300). Longer than one worker invocation, a job runs in "
            "segments.",
            example=600,
        ),
    ] = Field(
        300,
        ge=10,
        le=MAX_TIMEOUT_SECONDS,
        description="The job's deadline, from its first start: at most the deployment's "
        "`max_job_seconds` (default 14,400). A job longer than one worker invocation runs in "
        "segments (see `segments`).",
    )
    max_budget_usd: Annotated[
        float | None,
        RunOption(
            sdk="max_budget_usd",
            warm="profile",
            help="Spending cap for the job.",
            example=0.5,
        ),
    ] = Field(None, gt=0, description="≤ the deployment's cap")
    model: Annotated[
        Annotated[str, StringConstraints(pattern=_MODEL_RE)] | None,
        RunOption(
            sdk=Excluded(
                "resolved by the deployment (Settings.cli_model) into AgentRequest.model, "
                "which the SDK options take"
            ),
            warm="profile",
            help="Model; default: the deployment's.",
            example="claude-haiku-4-5",
        ),
    ] = Field(None, description="Defaults to the deployment's model")
    output_schema: Annotated[
        dict[str, Any] | None,
        RunOption(
            sdk=_output_format,
            warm="cold",
            help="A JSON Schema (inline JSON, or @file.json) for a structured result.",
            example={"type": "object"},
        ),
    ] = Field(
        None,
        description="A JSON Schema object; the result then carries `structured`. Any valid "
        f"JSON within the body's size, nested at most {MAX_DOCUMENT_DEPTH} levels; it is kept "
        "and returned exactly as sent.",
        json_schema_extra={"x-max-depth": MAX_DOCUMENT_DEPTH},
    )

    approvals: Annotated[
        list[str],
        RunOption(
            sdk=Excluded("the worker's PreToolUse gate (worker/approvals.py) applies them"),
            warm=Excluded("not on the CLI's command line: the gate is a hook of the run"),
            flag="--approve-rule",
            help="A permission rule whose calls wait for a person's decision (repeat the "
            "option), e.g. 'Bash(git push:*)'; its tool must be allowed.",
            example=["Read(secrets/**)"],
        ),
    ] = Field(
        default_factory=list,
        max_length=MAX_APPROVAL_RULES,
        description="Permission rules (the `allowed_tools` syntax, e.g. `Bash(git push:*)`) "
        "whose matching calls wait for a person's decision: the job becomes "
        "`awaiting_approval` and resumes once answered. Each rule's tool must be allowed.",
    )
    approval_timeout_seconds: Annotated[
        int,
        RunOption(
            sdk=Excluded("the approval's expiry, swept outside the run"),
            warm=Excluded("not on the CLI's command line"),
            flag="--approval-timeout",
            help="Seconds a call may wait for a decision before the job ends failed "
            "(approval_expired); default 86,400, at most 7 days.",
            example=3600,
        ),
    ] = Field(
        DEFAULT_APPROVAL_TIMEOUT_SECONDS,
        ge=MIN_APPROVAL_TIMEOUT_SECONDS,
        le=MAX_APPROVAL_TIMEOUT_SECONDS,
        description="How long a call may wait for a decision; unanswered by then, the job "
        "ends `failed` with `error.code = approval_expired`. Waiting does not count against "
        "`timeout_seconds`.",
    )

    mcp_servers: Annotated[
        list[McpServer],
        RunOption(
            sdk=Excluded(
                "the worker's loopback broker configures each server (worker/mcp_broker.py); "
                "the CLI gets only the broker's URL"
            ),
            warm="cold",
            flag="--mcp-server",
            help='A remote MCP server as JSON (repeat the option): \'{"name": "kb", "url": '
            '"https://…", "credential": "VAULT_ENTRY"}\'; allow its tools as mcp__kb__TOOL.',
            example=[{"name": "kb", "url": "https://mcp.example.com/kb", "credential": "kb"}],
        ),
    ] = Field(
        default_factory=list,
        max_length=MAX_MCP_SERVERS,
        description="Remote MCP servers (streamable HTTP) for the job. Each URL must start "
        "with one of the deployment's `MCP_ALLOWED_URLS` prefixes (otherwise 422 naming the "
        "server); `credential` names an entry of the tenant's vault, sent to the server as a "
        "bearer token by the worker, never seen by the agent. A job gets exactly the tools it "
        "names as `mcp__<name>__<tool>` in `allowed_tools` (and `approvals` may name them).",
    )
    repository: Annotated[
        RepositorySpec | None,
        RunOption(
            sdk=Excluded("the worker clones it into the working directory before the run"),
            warm="cold",
            help='The repository to work on, as JSON: \'{"url": "https://github.com/o/r", '
            '"ref": "main"}\' (or @file.json).',
            example={"url": "https://github.com/octo/hello", "ref": "main"},
        ),
    ] = Field(
        None,
        description="A repository of the deployment's Git host, cloned into the working "
        "directory before the agent starts (the tenant's GitHub credential is used by the "
        "worker and never reaches the agent). An unknown repository, or a tenant without a "
        "credential, ends the job `repository_unavailable`; one too large, "
        "`repository_too_large`.",
    )
    pull_request: Annotated[
        PullRequestSpec | None,
        RunOption(
            sdk=Excluded("the worker commits, pushes and opens it after the run"),
            warm="cold",
            help='Open a pull request with the agent\'s changes, as JSON: \'{"title": "…", '
            "\"draft\": true}' ('{}' for the defaults); needs --repository.",
            example={"title": "Fix the greeting", "draft": True},
            needs=("repository",),
        ),
    ] = Field(
        None,
        description="When the job succeeds with changes, the worker (never the agent) commits "
        "them, pushes branch `claude-jobs/<job_id>` and opens a pull request; the job then "
        'shows `pull_request`, or `pull_request_skipped: "no_changes"`. Needs `repository`.',
    )

    @field_validator("allowed_tools")
    @classmethod
    def _tool_names(cls, tools: list[str]) -> list[str]:
        for tool in tools:
            if not _TOOL_RE.fullmatch(tool) or len(tool) > 256:
                raise ValueError(f"{tool!r} is not a tool name")
        if len(set(tools)) != len(tools):
            raise ValueError("tool names must be unique")
        return tools

    @field_validator("approvals")
    @classmethod
    def _approval_rules(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if not _TOOL_RE.fullmatch(rule) or len(rule) > 256:
                raise ValueError(f"{rule!r} is not a permission rule")
        if len(set(rules)) != len(rules):
            raise ValueError("approval rules must be unique")
        return rules

    @model_validator(mode="after")
    def _mcp_tools_of_servers(self) -> JobOptions:
        check_mcp(self.mcp_servers, self.allowed_tools)
        return self

    @model_validator(mode="after")
    def _approved_tools_allowed(self) -> JobOptions:
        allowed = {tool_base_name(tool) for tool in self.allowed_tools}
        for rule in self.approvals:
            if tool_base_name(rule) not in allowed:
                raise ValueError(
                    f"approval rule {rule!r}: its tool {tool_base_name(rule)!r} is not in "
                    "allowed_tools"
                )
        return self

    @model_validator(mode="after")
    def _pull_request_needs_repository(self) -> JobOptions:
        if self.pull_request is not None and self.repository is None:
            raise ValueError("pull_request needs a repository")
        return self

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        if json_depth(schema) > MAX_DOCUMENT_DEPTH:
            raise ValueError(f"nests deeper than {MAX_DOCUMENT_DEPTH} levels")
        # Imported here: only requests that carry a schema pay for jsonschema.
        from jsonschema import exceptions, validators

        try:
            validators.validator_for(schema).check_schema(schema)
        except exceptions.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return schema


def run_options() -> Iterator[tuple[str, RunOption]]:
    """Each option's name and metadata, in field order."""
    for name, info in JobOptions.model_fields.items():
        found = [m for m in info.metadata if isinstance(m, RunOption)]
        if len(found) != 1:
            raise TypeError(f"JobOptions.{name} needs exactly one RunOption")
        yield name, found[0]


def default_of(name: str) -> Any:
    return JobOptions.model_fields[name].get_default(call_default_factory=True)


def sdk_arguments(options: JobOptions) -> dict[str, Any]:
    """The `ClaudeAgentOptions` arguments the job's options make."""
    arguments: dict[str, Any] = {}
    for name, option in run_options():
        value = getattr(options, name)
        if isinstance(option.sdk, str):
            arguments[option.sdk] = list(value) if isinstance(value, list) else value
        elif not isinstance(option.sdk, Excluded):
            arguments.update(option.sdk(value))
    return arguments


def warm_fields(kind: Literal["profile", "cold"] = "profile") -> tuple[str, ...]:
    """The options a warm CLI's profile holds (`profile`), or those that keep a job cold."""
    return tuple(name for name, option in run_options() if option.warm == kind)

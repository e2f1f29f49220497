"""What a job's agent run starts: the SDK options for its request, and the CLI those options
launch (argv, environment, working directory, identity).

The CLI runs with `permission_mode="dontAsk"` (anything not pre-approved is denied), no setting
sources, a strict MCP configuration (empty, or the job's servers at the worker's loopback
broker: `mcp_broker.py`), and `tools` limited to the base names of the
job's `allowed_tools`: a tool the job does not allow does not exist for the model, and a call
to it anyway is answered "No such tool available". A permission rule such as
`Bash(git status:*)` offers the tool but approves only matching calls; `dontAsk` denies the
rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..approval_models import ASK_USER_QUESTION
from ..job_options import sdk_arguments, tool_base_name
from .isolation import AgentIdentity, spawn_as
from .sdk_seam import cli_command, sdk_environment

if TYPE_CHECKING:
    from .agent import AgentRequest


def sdk_options(
    request: AgentRequest,
    stderr: Callable[[str], None] | None = None,
    pre_tool_use: Any | None = None,
    post_tool_use: Any | None = None,
) -> Any:
    """The ClaudeAgentOptions for a job (built here so tests can read them). `pre_tool_use`:
    a PreToolUse hook callback (a segment's turn-boundary stop); `post_tool_use`: a callback
    for PostToolUse and PostToolUseFailure (how long the segment's tool calls take)."""
    from claude_agent_sdk import ClaudeAgentOptions, HookMatcher

    system_prompt: Any = (
        request.system_prompt
        if request.system_prompt
        else {"type": "preset", "preset": "claude_code"}
    )
    # Sessions: resume the transcript materialised in the sandbox, or start one under the
    # session's id; the SDK mirrors what the CLI writes to the (tenant-scoped) store.
    session: dict[str, Any] = {}
    if request.session is not None:
        key = "resume" if request.session.resume else "session_id"
        session = {key: request.session.session_id, "session_store": request.session.store}
    hooks: dict[str, Any] = {}
    if pre_tool_use is not None:
        hooks["PreToolUse"] = [HookMatcher(matcher=None, hooks=[pre_tool_use])]
    if post_tool_use is not None:
        for event in ("PostToolUse", "PostToolUseFailure"):
            hooks[event] = [HookMatcher(matcher=None, hooks=[post_tool_use])]
    if hooks:
        session["hooks"] = hooks
    # Approvals: the CLI (2.1.330) offers `AskUserQuestion` only with a permission prompt
    # tool; the question is then deferred by the PreToolUse gate (approvals.py). In
    # `dontAsk` mode nothing is asked over that channel.
    if any(tool_base_name(tool) == ASK_USER_QUESTION for tool in request.options.allowed_tools):
        session["permission_prompt_tool_name"] = "stdio"
    return ClaudeAgentOptions(
        **session,
        cli_path=request.cli,
        cwd=request.cwd,
        env=request.env,
        permission_mode="dontAsk",
        setting_sources=[],
        strict_mcp_config=True,
        mcp_servers=dict(request.mcp_servers),  # MCP servers: the loopback broker's
        **sdk_arguments(request.options),
        model=request.model,
        system_prompt=system_prompt,
        stderr=stderr,
    )


@dataclass(frozen=True)
class Launch:
    """Everything that starts a CLI: its argv, its whole environment, where and as whom. Two
    runs with equal launches start the same CLI (the prompt goes to its stdin later)."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    identity: AgentIdentity

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.env)

    def spawn(self) -> tuple[list[str], dict[str, Any]]:
        """The argv and the `subprocess.Popen`/`anyio.open_process` arguments (but the pipes)
        that start this CLI: exactly its environment, in a session of its own, umask 077, as
        the agent's user."""
        argv, as_agent = spawn_as(self.identity, list(self.command))
        return argv, {
            "cwd": self.cwd,
            "env": self.environment,
            "start_new_session": True,
            "umask": 0o077,
            **as_agent,
        }


def launch_of(request: AgentRequest, options: Any) -> Launch:
    """The CLI a run starts: the SDK's own command for `options`, and exactly the request's
    environment plus the variables the SDK always sets."""
    command = cli_command(options)
    env = {**request.env, **sdk_environment(), "PWD": str(request.cwd)}
    return Launch(tuple(command), tuple(sorted(env.items())), str(request.cwd), request.identity)

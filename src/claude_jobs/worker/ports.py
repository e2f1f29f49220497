"""The worker's own ports: the values an agent run takes and gives, what the worker needs from
the outside (the agent runner, the key proxy, the stores), and `WorkerPorts`, every dependency
of a `JobProcessor` in one value. Implementations: `agent.py` and `proxy.py` (the real agent and
key proxy), `adapters/` (S3, Secrets Manager), `tests/fakes` (in memory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from ..models import JobErrorInfo, JobOptions, PullRequestInfo, PullRequestSkipped, Usage
from ..resources import WORKER_DEADLINE_MARGIN_SECONDS
from .isolation import AgentIdentity

if TYPE_CHECKING:
    from ..documents import JobDocuments
    from ..models import Job
    from ..ports import JobRepository, Vault
    from ..settings import Settings
    from .approvals import DeferredCall
    from .cli_process import WarmProcess
    from .containment import ProcessSweeper
    from .isolation import IdentityPool
    from .mcp_broker import McpBroker
    from .progress import NoProgress, ProgressEvents
    from .repository import GitHubWorker
    from .sessions import AgentSession, SessionKeeper

#: The shortest run worth starting; with less Lambda time left the message is retried.
MIN_RUN_SECONDS = 5.0

#: "segment": stopped before the invocation's end, to be resumed by the next (segments.py).
#: "deferred": stopped before a call that waits for approval (approvals.py).
Ending = Literal["succeeded", "failed", "timed_out", "cancelled", "segment", "deferred"]


@dataclass(frozen=True)
class AgentRequest:
    job_id: str
    prompt: str
    system_prompt: str | None
    options: JobOptions
    model: str
    cli: Path  # the bundled Claude Code CLI
    cwd: Path
    env: dict[str, str]  # the CLI's whole environment, but for the SDK's own variables
    deadline_seconds: float
    identity: AgentIdentity = field(default_factory=AgentIdentity)
    should_stop: Callable[[], bool] = lambda: False
    on_started: Callable[[int], None] = lambda pid: None  # the CLI's pid, once it runs
    #: Every claude-agent-sdk message, as it arrives (progress events: `progress.py`). Called
    #: on the run's event loop: it must be quick and must not raise.
    on_message: Callable[[Any], None] = lambda message: None
    #: The conversation the run continues or starts (sessions.py); None: no session.
    session: AgentSession | None = None
    #: Long jobs (segments.py): when set, this run is a segment — from this many seconds on
    #: the agent is stopped at its next turn boundary (before its next tool call runs), and
    #: reaching `deadline_seconds` ends the segment rather than timing the job out.
    yield_after_seconds: float | None = None
    #: Long jobs: how long the job's previous segment's longest tool call took (or a call its
    #: hard stop cut off had run), in seconds; this segment judges its first call by it until
    #: it has timed one of its own (segments.py).
    expected_tool_seconds: float = 0.0
    #: Warm start (warm.py): the CLI started ahead of this run; used when its launch is this
    #: run's, else stopped.
    warm: WarmProcess | None = None
    #: Approval rules (`allowed_tools` syntax): a matching call is deferred before it runs and
    #: the run ends "deferred" (approvals.py).
    approvals: tuple[str, ...] = ()
    #: Ids of deferred calls a person allowed: they run when the session resumes.
    approved_calls: tuple[str, ...] = ()
    #: Deferred calls a person denied (id, message): answered `deny` should the CLI emit them.
    denied_calls: tuple[tuple[str, str], ...] = ()
    #: Every `AskUserQuestion` call is deferred (a question for the caller).
    ask_questions: bool = False
    #: Send no prompt: the resumed CLI runs the allowed deferred call and goes on from there.
    no_prompt: bool = False
    #: MCP servers: the SDK's `mcp_servers` (each at the loopback broker, `mcp_broker.py`).
    mcp_servers: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentOutcome:
    ending: Ending
    text: str | None = None
    structured: Any | None = None
    usage: Usage = field(default_factory=Usage)
    error: JobErrorInfo | None = None
    permission_denials: list[str] = field(default_factory=list)
    #: The call that waits for approval (ending "deferred").
    deferred: DeferredCall | None = None
    #: Repositories (repository.py): the pull request opened, or why none was.
    pull_request: PullRequestInfo | None = None
    pull_request_skipped: PullRequestSkipped | None = None
    #: Long jobs: a segment's longest tool call (or how long a call its hard stop cut off had
    #: run), in seconds, for the next segment's `expected_tool_seconds`.
    longest_tool_seconds: float | None = None

    @property
    def is_error(self) -> bool:
        return self.ending != "succeeded"


@dataclass(frozen=True)
class Metered:
    """A job's metered usage so far."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0  # calls forwarded upstream
    budget_refusals: int = 0  # calls refused because the budget was spent
    limit_usd: float | None = None
    #: What the calls still open would be charged if cut off now (their output shown so far,
    #: beyond the usage they reported).
    open_usd: float = 0.0

    @property
    def spent(self) -> bool:
        return self.limit_usd is not None and self.cost_usd >= self.limit_usd

    @property
    def charged_usd(self) -> float:
        """The job's cost, calls still open included: the figure a job that ends now
        records."""
        return self.cost_usd + self.open_usd


class AgentRunner(Protocol):
    """Runs one agent request to its end (the real one: the bundled CLI through the SDK)."""

    def run(self, request: AgentRequest) -> AgentOutcome: ...


class KeyProxy(Protocol):
    """The worker's loopback endpoint that holds the real key: the agent gets a per-job token
    for it, never the key."""

    def start(self) -> Any: ...

    def close(self) -> None: ...

    @property
    def alive(self) -> bool: ...

    @property
    def url(self) -> str: ...

    def issue(
        self,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
        journal: Journal | None = None,
    ) -> str:
        """A token for one job; its calls are refused once their metered cost reaches
        `limit_usd`, and may name only `models` (the job's) and the deployment's models; a
        metered call is forwarded only once `journal` has the job's exposure with it."""
        ...

    def assign(
        self,
        token: str,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
        journal: Journal | None = None,
    ) -> None:
        """Bind a token issued ahead of its job (warm start) to `job_id`, with a fresh meter,
        the job's limit, its models and its spend journal."""
        ...

    def revoke(self, token: str) -> object: ...

    def metered(self, token: str) -> Metered | None:
        """The job's usage and cost as metered so far."""
        ...


class WorkspaceStore(Protocol):
    """Long jobs: a job's working directory, as one archive, between segments."""

    def save(self, tenant_id: str, job_id: str, body: IO[bytes], size: int) -> None: ...

    def load(self, tenant_id: str, job_id: str, into: IO[bytes]) -> bool:
        """Copy the stored archive into `into`; False when none is stored."""

    def delete(self, tenant_id: str, job_id: str) -> None: ...


class ArtifactSink(Protocol):
    """Stores a job's artifacts: each at `prefix(tenant, job) + path`."""

    def prefix(self, tenant_id: str, job_id: str) -> str: ...

    def put(self, tenant_id: str, job_id: str, path: str, body: IO[bytes], size: int) -> None: ...


#: A job's spend journal (`metering`): writes the job's exposure through to the job (True),
#: or says it cannot (False: the job is no longer this worker's); may raise on a storage fault.
Journal = Callable[[float], bool]
#: Reads the Anthropic key (Secrets Manager: `adapters/secrets.py`); raises when it cannot.
KeySource = Callable[[], str]
#: Places a job's input objects in a directory and returns their paths (`inputs.py`).
InputFetcher = Callable[["Job", Path], Sequence[Path]]


def _sweeper() -> ProcessSweeper:
    from .containment import ProcessSweeper

    return ProcessSweeper()


def _no_progress() -> NoProgress:
    from .progress import NoProgress

    return NoProgress()


@dataclass(frozen=True)
class WorkerPorts:
    """Everything a `JobProcessor` uses: ports, settings, timings and the clock."""

    jobs: JobRepository
    documents: JobDocuments
    runner: AgentRunner
    proxy: KeyProxy
    #: None: no Anthropic key (Bedrock: the proxy signs with the worker's role).
    key: KeySource | None
    settings: Settings
    identities: IdentityPool
    sweeper: ProcessSweeper = field(default_factory=_sweeper)
    inputs: InputFetcher | None = None
    #: Files: where what the agent leaves under out/ goes; None: not collected.
    artifacts: ArtifactSink | None = None
    progress: ProgressEvents | NoProgress = field(default_factory=_no_progress)
    #: Values scrubbed from anything stored or logged.
    known_secrets: Sequence[str] = ()
    #: Seconds kept after a run to record it (the lease's margin too).
    margin_seconds: float = WORKER_DEADLINE_MARGIN_SECONDS
    sandbox_dir: str | None = None
    min_run_seconds: float = MIN_RUN_SECONDS
    clock: Callable[[], float] = time.time
    #: Sessions (and with them long jobs' segments); None: a job runs in one invocation.
    sessions: SessionKeeper | None = None
    #: Long jobs: seconds before the invocation's end at which a segment yields.
    boundary_seconds: float = 60.0
    #: Long jobs: the working directory carried between segments; None: not carried.
    workspaces: WorkspaceStore | None = None
    #: MCP servers: the loopback broker and the tenants' vaults (None: a job naming a server
    #: fails `mcp_unavailable`).
    mcp: McpBroker | None = None
    vault: Vault | None = None
    #: Repositories and pull requests (repository.py); None: jobs with one end
    #: `repository_unavailable`.
    github: GitHubWorker | None = None

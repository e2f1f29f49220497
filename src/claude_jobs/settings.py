"""Deployment settings: one pydantic model, read from the environment only when asked."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

DEFAULT_PERMITTED_TOOLS: tuple[str, ...] = (
    "Read",
    "Glob",
    "Grep",
    "Edit",
    "Write",
    "Bash",
    "TodoWrite",
    # Approvals: the agent's questions wait for the caller's answers (a job that allows it).
    "AskUserQuestion",
)
DEFAULT_ALLOWED_TOOLS: tuple[str, ...] = ("Read", "Glob", "Grep")
DEFAULT_MODEL = "claude-sonnet-4-5"
PUBLIC_ANTHROPIC_URL = "https://api.anthropic.com"


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return value


#: Tool names, also accepted as one comma-separated string (an environment variable).
ToolNames = Annotated[tuple[str, ...], BeforeValidator(_split_commas)]

#: Model names a job may ask for → Bedrock inference profile (or model) ids: the defaults of a
#: Bedrock deployment, US cross-region inference profiles.
DEFAULT_BEDROCK_MODELS: dict[str, str] = {
    "claude-sonnet-4-5": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-haiku-4-5": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-5": "us.anthropic.claude-opus-4-5-20251101-v1:0",
}


def parse_model_map(value: object) -> object:
    """`name=id,name2=id2` or a JSON object (an environment variable) → {name: id}."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text)
    pairs = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, model_id = item.partition("=")
        if not sep or not name.strip() or not model_id.strip():
            raise ValueError(f"{item.strip()!r} is not name=model-id")
        pairs[name.strip()] = model_id.strip()
    return pairs


def format_model_map(models: Mapping[str, str]) -> str:
    """The environment variable's form of a model map."""
    return ",".join(f"{name}={model_id}" for name, model_id in models.items())


#: Model name → inference profile id, also accepted as `name=id,name2=id2` or JSON.
ModelMap = Annotated[dict[str, str], BeforeValidator(parse_model_map)]


class Settings(BaseModel):
    """Everything a function needs to know about its deployment.

    Field aliases are the environment variable names the CDK app (and the local stack) set.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    jobs_table: str = Field("claude-jobs-jobs", alias="JOBS_TABLE")
    keys_table: str = Field("claude-jobs-api-keys", alias="KEYS_TABLE")
    events_table: str = Field("claude-jobs-events", alias="EVENTS_TABLE")
    jobs_queue_url: str = Field("", alias="JOBS_QUEUE_URL")
    results_bucket: str = Field("", alias="RESULTS_BUCKET")
    anthropic_secret_id: str = Field("claude-jobs/anthropic-api-key", alias="ANTHROPIC_SECRET_ID")
    anthropic_base_url: str = Field(PUBLIC_ANTHROPIC_URL, alias="ANTHROPIC_BASE_URL")
    event_bus_name: str = Field("", alias="EVENT_BUS_NAME")

    permitted_tools: Annotated[ToolNames, Field(alias="PERMITTED_TOOLS")] = DEFAULT_PERMITTED_TOOLS
    default_model: str = Field(DEFAULT_MODEL, alias="DEFAULT_MODEL")
    #: MCP servers: the URL prefixes a job's `mcp_servers` may use (comma-separated); none:
    #: no job may name an MCP server.
    mcp_allowed_urls: Annotated[ToolNames, Field(alias="MCP_ALLOWED_URLS")] = ()
    #: The tenants' vaults: entry NAME of tenant T is the secret `<prefix>T/NAME`.
    vault_secret_prefix: str = Field("claude-jobs/vault/", alias="VAULT_SECRET_PREFIX")
    max_budget_usd_cap: float = Field(10.0, alias="MAX_BUDGET_USD_CAP", gt=0)
    #: Models the key proxy forwards calls for besides each job's own (Anthropic provider):
    #: the default model and the small models the CLI uses for background work.
    extra_models: Annotated[ToolNames, Field(alias="PROXY_EXTRA_MODELS")] = (
        "claude-haiku-4-5",
        "claude-haiku-5-5",
    )
    #: A job's `timeout_seconds` at most (its deadline, from its first start); jobs longer
    #: than one worker invocation run in segments.
    max_job_seconds: int = Field(14_400, alias="MAX_JOB_SECONDS", ge=10, le=7 * 24 * 3600)
    #: The worker invocation's length (its function timeout; the local stack's
    #: `--invocation-seconds`): the end-of-invocation margins scale with it.
    worker_invocation_seconds: int = Field(900, alias="WORKER_INVOCATION_SECONDS", ge=10, le=900)

    job_retention_days: int = Field(30, alias="JOB_RETENTION_DAYS", ge=1)
    #: Sessions (their items and transcripts) expire this many days after their last job
    #: was submitted; the bucket's lifecycle rule on `sessions/` uses the same figure.
    session_retention_days: int = Field(30, alias="SESSION_RETENTION_DAYS", ge=1)
    idempotency_ttl_seconds: int = Field(24 * 3600, alias="IDEMPOTENCY_TTL_SECONDS", ge=60)
    max_attempts: int = Field(3, alias="MAX_ATTEMPTS", ge=1)
    secret_max_age_seconds: int = Field(300, alias="SECRET_MAX_AGE_SECONDS", ge=0)
    presigned_url_seconds: int = Field(3600, alias="PRESIGNED_URL_SECONDS", ge=60)
    #: Keys the MAC of list page tokens. Tokens only ever position within the caller's own
    #: jobs (the tenant is checked server-side), so the MAC guards integrity; set a random
    #: value to make tokens unforgeable as well.
    page_token_secret: str = Field("", alias="PAGE_TOKEN_SECRET", max_length=256)
    #: The Secrets Manager secret holding that key (a generated value: the CDK app and the
    #: local stack make one), read when the job service is built; PAGE_TOKEN_SECRET, when
    #: set, wins. The status function refuses to start on Lambda without either (issue 20).
    page_token_secret_id: str = Field("", alias="PAGE_TOKEN_SECRET_ID")

    # Fair sharing between tenants (docs/jobs.md, "Fair sharing").
    #: A tenant's pending (queued + running) jobs at most: one more submission is refused
    #: with 429 `tenant_limit`.
    tenant_max_pending: int = Field(100, alias="TENANT_MAX_PENDING", ge=1)
    #: A tenant's running share: jobs of a tenant that already runs this many wait (their
    #: messages come back after TENANT_DEFER_SECONDS) while other tenants' jobs run. Below
    #: the worker's concurrency, one tenant never holds every worker.
    tenant_max_running: int = Field(5, alias="TENANT_MAX_RUNNING", ge=1)
    #: How long a job of a tenant at its running share waits before it is offered again
    #: (growing with each wait, up to 12 times this; jittered).
    tenant_defer_seconds: int = Field(2, alias="TENANT_DEFER_SECONDS", ge=1, le=60)

    # Files (docs/jobs.md, "Files"): uploads in, artifacts out.
    #: The largest file one upload may declare (`POST /v1/uploads` `size_bytes`).
    upload_max_bytes: int = Field(100 * 1024 * 1024, alias="UPLOAD_MAX_BYTES", ge=1)
    #: A job's inputs together at most (uploads; an S3 trigger's objects too).
    inputs_max_bytes: int = Field(256 * 1024 * 1024, alias="INPUTS_MAX_BYTES", ge=1)
    #: Files under out/ uploaded as a job's artifacts at most, and their bytes together.
    artifacts_max_count: int = Field(100, alias="ARTIFACTS_MAX_COUNT", ge=0, le=1000)
    artifacts_max_bytes: int = Field(100 * 1024 * 1024, alias="ARTIFACTS_MAX_BYTES", ge=0)
    #: Long jobs: the working directory carried from one segment to the next (worker/workspace.py)
    #: at most this many files and bytes; a larger one ends the job `workspace_too_large`.
    workspace_max_files: int = Field(20_000, alias="WORKSPACE_MAX_FILES", ge=1)
    workspace_max_bytes: int = Field(512 * 1024 * 1024, alias="WORKSPACE_MAX_BYTES", ge=1)
    #: Sessions: a session's stored transcripts (its subagents' included) at most; loading a
    #: larger one, or saving past it, ends the job `session_too_large` (worker/sessions.py).
    session_max_bytes: int = Field(32 * 1024 * 1024, alias="SESSION_MAX_BYTES", ge=1024)

    # The worker.
    #: Where the worker runs as root (a container, CI), the agent runs as this user instead.
    agent_user: str = Field("nobody", alias="AGENT_USER")
    #: Retries the CLI makes on a failing Messages API call (its CLAUDE_CODE_MAX_RETRIES).
    agent_max_retries: int = Field(4, alias="AGENT_MAX_RETRIES", ge=0, le=10)
    #: Warm start (worker/warm.py): after each job, start the CLI for the next one ahead of
    #: time (the CDK app and the local stack turn it on; off, every job starts its CLI cold).
    warm_start: bool = Field(False, alias="WARM_START")
    #: A warm CLI older than this is replaced rather than used.
    warm_start_max_age_seconds: int = Field(
        900, alias="WARM_START_MAX_AGE_SECONDS", ge=1, le=24 * 3600
    )
    #: On Lambda, how long the worker waits at most for a warm CLI to boot before returning
    #: (the environment is frozen then): billed to that invocation.
    warm_start_settle_seconds: float = Field(3.0, alias="WARM_START_SETTLE_SECONDS", ge=0, le=30)
    #: How often a running job's cancel request is looked for.
    cancel_poll_seconds: float = Field(2.0, alias="CANCEL_POLL_SECONDS", gt=0, le=30)
    #: After an infrastructure fault the message comes back after this many seconds, doubled
    #: for each earlier receive (capped at 15 min), instead of the queue's long visibility
    #: timeout.
    retry_base_seconds: int = Field(30, alias="RETRY_BASE_SECONDS", ge=0, le=900)
    #: The reconciler (docs/adr/0001-runtime-api.md): a queued job whose message was due, or a
    #: running job whose lease ended, this long ago gets its message again.
    reconcile_grace_seconds: int = Field(120, alias="RECONCILE_GRACE_SECONDS", ge=0, le=3600)
    #: Where the worker runs as root (a container, CI, the local stack) each job that runs at
    #: the same time gets its own unprivileged uid/gid from this range ("first-last"), so one
    #: job's agent cannot read another's files or processes. Empty: every job runs as
    #: AGENT_USER. Ignored when the worker is not root (Lambda: one job per environment).
    agent_uid_range: str = Field(
        "61000-61999", alias="AGENT_UID_RANGE", pattern=r"^(\d{4,9}-\d{4,9})?$"
    )
    #: Fork chains (issue 20): a job's agent may have at most this many live processes (its
    #: CLI included); more ends the job `too_many_processes`. As root (a uid per job) the
    #: kernel also holds the job's uid to RLIMIT_NPROC = this + AGENT_THREAD_ALLOWANCE (the
    #: kernel counts threads, and the CLI has a few dozen).
    agent_max_processes: int = Field(256, alias="AGENT_MAX_PROCESSES", ge=8, le=32_768)
    agent_thread_allowance: int = Field(256, alias="AGENT_THREAD_ALLOWANCE", ge=0, le=32_768)
    #: How often the worker reaps the zombies re-parented to it and counts the job's processes
    #: while the agent runs.
    process_watch_seconds: float = Field(0.25, alias="PROCESS_WATCH_SECONDS", gt=0, le=10)
    #: Directories every process may write to, cleared after each job of what it left there
    #: outside its sandbox (comma-separated). As root: entries of the job's uid; as one user
    #: with the agent: entries that appeared during the job, on Lambda only (where the worker is
    #: alone in its execution environment).
    scratch_dirs: str = Field("/tmp,/var/tmp,/dev/shm", alias="SCRATCH_DIRS")  # noqa: S108

    # Triggers, completion events and webhooks.
    inbox_bucket: str = Field("", alias="INBOX_BUCKET")
    trigger_dlq_url: str = Field("", alias="TRIGGER_DLQ_URL")
    webhook_secret_id: str = Field("claude-jobs/webhook-signing-key", alias="WEBHOOK_SECRET_ID")
    #: The trigger function's config file; default: `triggers.json` next to its handler.
    triggers_config: str = Field("", alias="TRIGGERS_CONFIG")
    #: The local stack only: webhooks may target loopback http URLs.
    allow_loopback_webhooks: bool = Field(False, alias="ALLOW_LOOPBACK_WEBHOOKS")
    #: The webhook deliveries queue (the notifier sends, the webhook function consumes).
    webhook_queue_url: str = Field("", alias="WEBHOOK_QUEUE_URL")
    #: A failed delivery is tried again after this many seconds, doubled for each earlier
    #: attempt (capped at 15 min).
    webhook_retry_base_seconds: int = Field(30, alias="WEBHOOK_RETRY_BASE_SECONDS", ge=0, le=900)

    # The model provider.
    #: `anthropic` (the key from Secrets Manager) or `bedrock` (no key: the worker's role signs
    #: Bedrock runtime calls).
    model_provider: Literal["anthropic", "bedrock"] = Field("anthropic", alias="MODEL_PROVIDER")
    #: Bedrock: the model names a job may ask for, and the inference profile id of each.
    bedrock_models: ModelMap = Field(
        default_factory=lambda: dict(DEFAULT_BEDROCK_MODELS), alias="BEDROCK_MODELS"
    )
    #: Bedrock: the runtime endpoint, when not the region's (the standard service override).
    bedrock_endpoint_url: str = Field("", alias="AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
    #: The region of the deployment (Lambda sets it); Bedrock calls are signed for it.
    aws_region: str = Field("us-east-1", alias="AWS_REGION")

    # Repositories and pull requests (issue 24; docs/github.md).
    #: The Git host jobs' repositories are on (`<this>/<owner>/<repo>`), and its REST API:
    #: GitHub by default; GitHub Enterprise, or the local stand-in, otherwise.
    github_git_url: str = Field("https://github.com", alias="GITHUB_GIT_URL", max_length=256)
    github_api_url: str = Field("https://api.github.com", alias="GITHUB_API_URL", max_length=256)
    #: Tenants' GitHub credentials: secret `<prefix><tenant>` (a token, or an App installation).
    github_secret_prefix: str = Field("claude-jobs/github/", alias="GITHUB_SECRET_PREFIX")
    #: GitHub events' installation → tenant lookups: secret `<prefix><installation id>`, outside
    #: the credentials' prefix (empty: `<credentials' prefix without its />-installations/`).
    github_installation_prefix: str = Field("", alias="GITHUB_INSTALLATION_PREFIX")
    #: A GitHub App (optional): its id, and the secret holding its private key (PEM).
    github_app_id: str = Field("", alias="GITHUB_APP_ID", max_length=32)
    github_app_key_secret_id: str = Field(
        "claude-jobs/github-app-key", alias="GITHUB_APP_KEY_SECRET_ID"
    )
    #: GitHub events (`POST /v1/github/events`): the secret holding the App's webhook secret
    #: (empty: the route refuses every delivery, 401), the handle a comment mentions to start
    #: a job, and the label that starts one on an issue (empty: labels start nothing).
    github_webhook_secret_id: str = Field("", alias="GITHUB_WEBHOOK_SECRET_ID")
    github_handle: str = Field(
        "@claude-jobs", alias="GITHUB_HANDLE", min_length=2, max_length=64, pattern=r"^@[\w-]+$"
    )
    github_label: str = Field("", alias="GITHUB_LABEL", max_length=64)
    #: The tools a GitHub event's job may use: it is asked to change the repository (each
    #: must also be in PERMITTED_TOOLS, or the job is refused with the reason in its comment).
    github_allowed_tools: Annotated[ToolNames, Field(alias="GITHUB_ALLOWED_TOOLS")] = (
        "Read",
        "Glob",
        "Grep",
        "Edit",
        "Write",
    )
    #: A cloned repository's size at most (its working tree and .git together):
    #: larger → `repository_too_large`.
    repository_max_bytes: int = Field(1024 * 1024 * 1024, alias="REPOSITORY_MAX_BYTES", ge=1024)
    #: The author (and committer) of the commit the worker makes of the agent's changes.
    git_author_name: str = Field("claude-jobs", alias="GIT_AUTHOR_NAME", max_length=128)
    git_author_email: str = Field(
        "claude-jobs@users.noreply.github.com", alias="GIT_AUTHOR_EMAIL", max_length=256
    )

    @property
    def uses_bedrock(self) -> bool:
        return self.model_provider == "bedrock"

    @property
    def bedrock_model_ids(self) -> frozenset[str]:
        """The ids the Bedrock proxy forwards: the inference profiles the names map to."""
        return frozenset(self.bedrock_models.values())

    @property
    def proxy_models(self) -> frozenset[str]:
        """The models every job's calls may name (Anthropic provider); a job adds its own."""
        return frozenset({self.default_model, *self.extra_models})

    def cli_model(self, name: str | None) -> str:
        """The model the CLI is started with for a job's `model` (or the default): on Bedrock,
        its inference profile id (a name that is not in the map is passed on as it is, and the
        proxy forwards it only if it is one of the ids)."""
        model = name or self.default_model
        if not self.uses_bedrock:
            return model
        return self.bedrock_models.get(model, model)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        names = {f.alias for f in cls.model_fields.values() if f.alias}
        return cls.model_validate({k: v for k, v in env.items() if k in names})

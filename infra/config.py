"""Deployment configuration of the CDK app: one pydantic model.

Values come, lowest precedence first, from the model's defaults (safe for production), a JSON
settings file (`infra/settings.json`, or the file named by the `settings_file` context key), and
CDK context (`cdk synth -c stage=dev -c worker_max_concurrency=4`). Context values arrive as
strings; pydantic converts them, and `none`/`null` clear an optional setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from claude_jobs.definitions import FUNCTIONS
from claude_jobs.settings import (
    DEFAULT_BEDROCK_MODELS,
    DEFAULT_MODEL,
    DEFAULT_PERMITTED_TOOLS,
    PUBLIC_ANTHROPIC_URL,
    ModelMap,
    ToolNames,
)

INFRA_DIR = Path(__file__).resolve().parent
DEFAULT_SETTINGS_FILE = INFRA_DIR / "settings.json"

#: The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)  # fmt: skip

# Worker sizing, from measured peak usage (`python -m infra.tools.measure_worker`, method and
# runs in docs/infra.md): one job in the image layout (handler + the bundled Claude Code CLI +
# a Bash tool call, as a non-root user) peaked at 321-343 MiB summed RSS (271-311 MiB PSS)
# across its process tree, and 0.2 MiB under /tmp.
WORKER_MEASURED_PEAK_RSS_MB = 343
WORKER_MEASURED_PEAK_TMP_MB = 0.2
#: The definition table's size, 3 x the measured peak: the CLI's memory grows with a
#: conversation's context, and tools (Bash, Grep) add processes; Lambda also gives more CPU
#: with more memory.
DEFAULT_WORKER_MEMORY_MB = FUNCTIONS["worker"].memory_mb
#: Twice Lambda's default: room for a job's inputs (S3 objects, 50 MiB each by default; uploads,
#: `inputs_max_bytes` = 256 MiB together) and the files its tools write in its workspace (its
#: artifacts among them), far above the measured 0.2 MiB.
DEFAULT_WORKER_EPHEMERAL_MB = 1024


class InfraConfig(BaseModel):
    """Everything that differs between deployments of the same code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,30}$")] = "claude-jobs"
    stage: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")] = "prod"

    # What jobs may do (the functions' Settings).
    permitted_tools: ToolNames = DEFAULT_PERMITTED_TOOLS
    #: MCP servers: the URL prefixes a job's `mcp_servers` may use (none: no MCP server).
    mcp_allowed_urls: ToolNames = ()
    default_model: str = DEFAULT_MODEL
    max_budget_usd_cap: Annotated[float, Field(gt=0, le=1000)] = 10.0
    job_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    #: Sessions (their transcripts in the results bucket under `sessions/`, and their items)
    #: expire this many days after their last job was submitted.
    session_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    #: A job's `timeout_seconds` at most; longer than one worker invocation (900 s), a job
    #: runs in segments.
    max_job_seconds: Annotated[int, Field(ge=10, le=7 * 24 * 3600)] = 14_400
    anthropic_base_url: str = PUBLIC_ANTHROPIC_URL
    #: Import an existing secret by name instead of creating an empty one.
    anthropic_secret_name: str | None = None

    # The model provider.
    #: `anthropic` (the key in Secrets Manager) or `bedrock` (no key: the worker's role invokes
    #: the models on Amazon Bedrock; no secret is created or granted).
    model_provider: Literal["anthropic", "bedrock"] = "anthropic"
    #: Bedrock: the model names a job may ask for → the inference profile (or, for in-region
    #: on-demand use, model) id each runs on. `-c bedrock_models=name=id,name2=id2` or JSON.
    bedrock_models: ModelMap = Field(default_factory=lambda: dict(DEFAULT_BEDROCK_MODELS))
    #: Bedrock: the regions the inference profiles route to (their foundation models are
    #: granted there); the defaults are those of the US cross-region profiles.
    bedrock_regions: ToolNames = ("us-east-1", "us-east-2", "us-west-2")

    # Worker capacity.
    worker_memory_mb: Annotated[int, Field(ge=512, le=10240)] = DEFAULT_WORKER_MEMORY_MB
    worker_ephemeral_storage_mb: Annotated[int, Field(ge=512, le=10240)] = (
        DEFAULT_WORKER_EPHEMERAL_MB
    )
    #: Reserved concurrency of the worker (a hard cap on parallel jobs and on spend); `None`
    #: leaves the worker in the account's unreserved pool.
    worker_reserved_concurrency: Annotated[int | None, Field(ge=1, le=1000)] = 10
    #: Maximum concurrency of the SQS event source (2 to 1000).
    worker_max_concurrency: Annotated[int, Field(ge=2, le=1000)] = 10
    #: Warm start (docs/jobs.md, "Warm start"): each worker environment starts the next job's CLI
    #: once a job is recorded (its boot is billed to that invocation; the CLI's memory stays
    #: held between jobs). Off: every job starts its CLI cold.
    warm_start: bool = True
    #: Repositories (issue 24): the Git host jobs' repositories are on, and its REST API
    #: (GitHub Enterprise: `https://ghe.example.com` and `https://ghe.example.com/api/v3`).
    github_git_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    #: A GitHub App (optional): its id, and the name of the secret holding its private key.
    github_app_id: Annotated[str, Field(pattern=r"^[0-9]{0,20}$")] = ""
    github_app_key_secret_name: str | None = None
    #: GitHub events (docs/github.md#github-events): `POST /v1/github/events` as the App's
    #: webhook (its secret generated: `<prefix>/github-webhook-secret`), the handle a comment
    #: mentions and the label that start a job. Needs `github_app_id`.
    github_events: bool = False
    github_handle: Annotated[str, Field(pattern=r"^@[\w-]{1,63}$")] = "@claude-jobs"
    github_label: Annotated[str, Field(max_length=64)] = ""
    #: The tools a GitHub event's job may use (each must be in `permitted_tools`).
    github_allowed_tools: ToolNames = ("Read", "Glob", "Grep", "Edit", "Write")

    # Fair sharing between tenants (the functions' Settings; docs/jobs.md, "Fair sharing").
    #: A tenant's pending (queued + running) jobs at most; more → 429 tenant_limit.
    tenant_max_pending: Annotated[int, Field(ge=1, le=100_000)] = 100
    #: A tenant's running share; below worker_max_concurrency so no tenant holds every worker.
    tenant_max_running: Annotated[int, Field(ge=1, le=1000)] = 5
    #: Base wait before a job of a tenant at its share is offered again.
    tenant_defer_seconds: Annotated[int, Field(ge=1, le=60)] = 2
    #: The reconciler (docs/adr/0001-runtime-api.md): a queued job whose message is this late,
    #: or a running job whose lease ended this long ago, gets its message again.
    reconcile_grace_seconds: Annotated[int, Field(ge=0, le=3600)] = 120

    # Files (the functions' Settings, same names; docs/jobs.md, "Files").
    #: The largest file one upload may declare (100 MiB).
    upload_max_bytes: Annotated[int, Field(ge=1, le=5 * 1024**3)] = 100 * 1024 * 1024
    #: A job's inputs together at most; they land in the worker's /tmp.
    inputs_max_bytes: Annotated[int, Field(ge=1, le=10 * 1024**3)] = 256 * 1024 * 1024
    #: Files under out/ uploaded as a job's artifacts at most, and their bytes together.
    artifacts_max_count: Annotated[int, Field(ge=0, le=1000)] = 100
    artifacts_max_bytes: Annotated[int, Field(ge=0, le=10 * 1024**3)] = 100 * 1024 * 1024

    # API.
    api_throttle_rate_limit: Annotated[float, Field(gt=0, le=10000)] = 50.0
    api_throttle_burst_limit: Annotated[int, Field(ge=1, le=5000)] = 100
    authorizer_cache_seconds: Annotated[int, Field(ge=0, le=3600)] = 60
    #: Execution logging of the stage: ERROR, or INFO while investigating.
    api_execution_log_level: Literal["ERROR", "INFO"] = "ERROR"

    # Operations.
    log_retention_days: int = 90
    log_level: str = "INFO"
    alarm_email: str | None = None
    #: Alarm when more than this fraction of finished jobs fail within an hour.
    job_failure_rate_threshold: Annotated[float, Field(gt=0, le=1)] = 0.2

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of {LOG_RETENTION_DAYS}")
        return value

    @field_validator("mcp_allowed_urls")
    @classmethod
    def _mcp_prefixes(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        from claude_jobs.mcp_models import url_problem

        for prefix in prefixes:
            problem = url_problem(prefix)
            if problem:
                raise ValueError(f"MCP allowlist prefix {prefix!r}: {problem}")
        return prefixes

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _bedrock_models_fit(self) -> InfraConfig:
        if self.model_provider != "bedrock":
            return self
        from infra.components.bedrock import MODEL_ID, REGION

        if not self.bedrock_models:
            raise ValueError("bedrock_models must name at least one model")
        bad = [i for i in self.bedrock_models.values() if not MODEL_ID.fullmatch(i)]
        if bad:
            raise ValueError(f"bedrock_models: not Bedrock model ids: {bad}")
        if not self.bedrock_regions or not all(REGION.fullmatch(r) for r in self.bedrock_regions):
            raise ValueError("bedrock_regions must be AWS region names")
        if self.default_model not in self.bedrock_models:
            raise ValueError(
                f"default_model {self.default_model!r} has no inference profile in bedrock_models"
            )
        return self

    @model_validator(mode="after")
    def _github_events_have_an_app(self) -> InfraConfig:
        if self.github_events and not self.github_app_id:
            raise ValueError("github_events needs github_app_id (events come from the App)")
        return self

    @model_validator(mode="after")
    def _concurrency_fits(self) -> InfraConfig:
        reserved = self.worker_reserved_concurrency
        if reserved is not None and self.worker_max_concurrency > reserved:
            raise ValueError(
                "worker_max_concurrency must not exceed worker_reserved_concurrency: the event "
                "source would be throttled"
            )
        return self

    @property
    def prefix(self) -> str:
        """Prefix of every physical name: `<app>-<stage>`."""
        return f"{self.app_name}-{self.stage}"

    @property
    def vault_prefix(self) -> str:
        """The tenants' vaults: entry NAME of tenant T is the secret `<this>T/NAME`."""
        return f"{self.prefix}/vault/"

    @property
    def github_secret_prefix(self) -> str:
        """Tenants' GitHub credentials: `<prefix>/github/<tenant>` (the worker reads only these)."""
        return f"{self.prefix}/github/"

    @property
    def github_installation_prefix(self) -> str:
        """GitHub events' installation → tenant lookups: `<prefix>/github-installations/<id>`,
        outside the credentials' prefix (the worker and the notifier cannot read them)."""
        return f"{self.prefix}/github-installations/"

    @property
    def secret_name(self) -> str:
        return self.anthropic_secret_name or f"{self.prefix}/anthropic-api-key"

    @classmethod
    def load(
        cls,
        context: Callable[[str], Any] | Mapping[str, Any] | None = None,
        settings_file: Path | None = None,
    ) -> InfraConfig:
        """Defaults, then the settings file (if it exists), then context values."""
        get: Callable[[str], Any]
        if context is None:
            get = lambda _key: None  # noqa: E731
        elif isinstance(context, Mapping):
            get = context.get
        else:
            get = context
        path = settings_file or _path(get("settings_file")) or DEFAULT_SETTINGS_FILE
        values: dict[str, Any] = {}
        if path.is_file():
            values.update(json.loads(path.read_text()))
        for name in cls.model_fields:
            raw = get(name)
            if raw is not None:
                values[name] = _from_context(raw)
        return cls.model_validate(values)


def _path(value: Any) -> Path | None:
    return Path(str(value)) if value else None


def _from_context(raw: Any) -> Any:
    if isinstance(raw, str) and raw.strip().lower() in {"none", "null"}:
        return None
    return raw

"""Deployment settings: one pydantic model, read from the environment only when asked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

DEFAULT_PERMITTED_TOOLS: tuple[str, ...] = (
    "Read",
    "Glob",
    "Grep",
    "Edit",
    "Write",
    "Bash",
    "TodoWrite",
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


class Settings(BaseModel):
    """Everything a function needs to know about its deployment.

    Field aliases are the environment variable names the CDK app (and the local stack) set.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    jobs_table: str = Field("claude-jobs-jobs", alias="JOBS_TABLE")
    keys_table: str = Field("claude-jobs-api-keys", alias="KEYS_TABLE")
    jobs_queue_url: str = Field("", alias="JOBS_QUEUE_URL")
    results_bucket: str = Field("", alias="RESULTS_BUCKET")
    anthropic_secret_id: str = Field("claude-jobs/anthropic-api-key", alias="ANTHROPIC_SECRET_ID")
    anthropic_base_url: str = Field(PUBLIC_ANTHROPIC_URL, alias="ANTHROPIC_BASE_URL")
    event_bus_name: str = Field("", alias="EVENT_BUS_NAME")

    permitted_tools: Annotated[ToolNames, Field(alias="PERMITTED_TOOLS")] = DEFAULT_PERMITTED_TOOLS
    default_model: str = Field(DEFAULT_MODEL, alias="DEFAULT_MODEL")
    max_budget_usd_cap: float = Field(10.0, alias="MAX_BUDGET_USD_CAP", gt=0)

    job_retention_days: int = Field(30, alias="JOB_RETENTION_DAYS", ge=1)
    idempotency_ttl_seconds: int = Field(24 * 3600, alias="IDEMPOTENCY_TTL_SECONDS", ge=60)
    max_attempts: int = Field(3, alias="MAX_ATTEMPTS", ge=1)
    secret_max_age_seconds: int = Field(300, alias="SECRET_MAX_AGE_SECONDS", ge=0)
    presigned_url_seconds: int = Field(3600, alias="PRESIGNED_URL_SECONDS", ge=60)

    # The worker.
    #: Where the worker runs as root (a container, CI), the agent runs as this user instead.
    agent_user: str = Field("nobody", alias="AGENT_USER")
    #: Retries the CLI makes on a failing Messages API call (its CLAUDE_CODE_MAX_RETRIES).
    agent_max_retries: int = Field(4, alias="AGENT_MAX_RETRIES", ge=0, le=10)
    #: How often a running job's cancel request is looked for.
    cancel_poll_seconds: float = Field(2.0, alias="CANCEL_POLL_SECONDS", gt=0, le=30)
    #: After an infrastructure fault the message comes back after this many seconds, doubled
    #: for each earlier receive (capped at 15 min), instead of the queue's long visibility
    #: timeout.
    retry_base_seconds: int = Field(30, alias="RETRY_BASE_SECONDS", ge=0, le=900)
    #: Where the worker runs as root (a container, CI, the local stack) each job that runs at
    #: the same time gets its own unprivileged uid/gid from this range ("first-last"), so one
    #: job's agent cannot read another's files or processes. Empty: every job runs as
    #: AGENT_USER. Ignored when the worker is not root (Lambda: one job per environment).
    agent_uid_range: str = Field(
        "61000-61999", alias="AGENT_UID_RANGE", pattern=r"^(\d{4,9}-\d{4,9})?$"
    )
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        names = {f.alias for f in cls.model_fields.values() if f.alias}
        return cls.model_validate({k: v for k, v in env.items() if k in names})

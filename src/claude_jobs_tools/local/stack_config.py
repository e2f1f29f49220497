"""The local stack's configuration: its settings, keys, environment and function table.

What `claude-jobs dev` reads (StackConfig, CLAUDE_JOBS_DEV_KEYS, the fair sharing variables),
the environment the functions see, and the reversible changes the stack makes to os.environ.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_jobs.definitions import FUNCTIONS as DEFINED_FUNCTIONS
from claude_jobs.settings import Settings

DEV_KEYS_ENV = "CLAUDE_JOBS_DEV_KEYS"
#: The standard service-specific endpoint override: the Bedrock runtime of `--provider bedrock`.
BEDROCK_ENDPOINT_ENV = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
#: Where the functions' code is, when not in the checkout this package is installed from.
FUNCTIONS_DIR_ENV = "CLAUDE_JOBS_FUNCTIONS_DIR"
#: Seconds between two runs of the local reconciler (re-drives, slot recounts, approval expiry).
RECONCILE_SECONDS_ENV = "CLAUDE_JOBS_RECONCILE_SECONDS"
#: The local default: frequent enough that an approval given 10 s (the least a job may give)
#: expires within ~20 s; a deployment runs it once a minute (infra/components/reconciler.py).
LOCAL_RECONCILE_SECONDS = 5.0
DEFAULT_TENANT = "local"
#: Sent upstream when no real key is configured (the offline model accepts anything).
PLACEHOLDER_KEY = "sk-ant-local-placeholder-not-a-key"
CANNED_ANSWER = (
    "This is a canned answer from the local stack's offline stand-in model, not from Claude. "
    "Set ANTHROPIC_API_KEY and restart `claude-jobs dev` for real answers."
)


def own_uid_block() -> str:
    """Agent uids for this stack alone: a random block of 1,000 above the usual user ranges.
    A root worker ends every process of a finished job's uid, and a job's uid guards its
    sandbox, so two stacks (or a stack and a test run) on one machine must not share uids."""
    first = 100_000 + 1000 * secrets.SystemRandom().randrange(0, 3000)
    return f"{first}-{first + 999}"


#: Environment every function sees locally, unless the caller's environment sets it.
DEFAULT_ENV = {
    "POWERTOOLS_SERVICE_NAME": "claude-jobs",
    "POWERTOOLS_METRICS_NAMESPACE": "ClaudeJobsLocal",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_AGENT_SDK_SKIP_VERSION_CHECK": "1",
}
#: Never visible to the functions: the key lives in the emulated Secrets Manager only, and no
#: real AWS credentials or profile may be picked up.
REMOVED_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


class StackError(RuntimeError):
    """The stack cannot start as configured."""


@dataclass(frozen=True)
class RegisteredKey:
    tenant_id: str
    key: str
    generated: bool


def parse_dev_keys(spec: str) -> list[tuple[str, str]]:
    """`"tenant:key,tenant2:key2"` → [(tenant, key), …]."""
    pairs = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        if not sep or not tenant.strip() or not key.strip():
            raise StackError(f"{DEV_KEYS_ENV}: {item.split(':')[0]!r}… is not tenant:key")
        pairs.append((tenant.strip(), key.strip()))
    if not pairs:
        raise StackError(f"{DEV_KEYS_ENV} is set but names no tenant:key")
    return pairs


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    dev_keys: str | None = None  # CLAUDE_JOBS_DEV_KEYS
    prefix: str = "claude-jobs-local"
    functions_dir: Path | None = None
    #: Logical queue id → SQS attributes, e.g. a short VisibilityTimeout for tests.
    queue_overrides: dict[str, dict[str, str]] | None = None
    #: API Gateway caches an authorizer's answer per token; the CDK app's default TTL.
    authorizer_cache_seconds: float = 60.0
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    #: `anthropic`, or `bedrock`: no Anthropic key; the worker's proxy signs Bedrock calls.
    model_provider: str = "anthropic"
    #: Bedrock: the runtime (AWS_ENDPOINT_URL_BEDROCK_RUNTIME); None: the offline stand-in.
    bedrock_endpoint_url: str | None = None
    #: The emulated worker invocation's length (`--invocation-seconds`): the worker's fake
    #: Lambda context and enforced timeout; its end-of-invocation margins scale with it.
    invocation_seconds: int = 900
    #: How often the reconciler runs (CLAUDE_JOBS_RECONCILE_SECONDS; a deployment's schedule
    #: is once a minute): re-drives wait out their grace whatever it is, approval expiry not.
    reconcile_seconds: float = LOCAL_RECONCILE_SECONDS
    #: CLAUDE_JOBS_RECONCILE_SECONDS as given: when set, it is the interval (checked at start).
    reconcile_env: str | None = None
    #: Repositories (issue 24): run the Git host stand-in (`--githost`, githost/local.py) and
    #: point GITHUB_GIT_URL/GITHUB_API_URL at it; otherwise they come from the environment.
    githost: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **values: Any) -> StackConfig:
        env = os.environ if environ is None else environ
        return cls(
            anthropic_api_key=env.get("ANTHROPIC_API_KEY") or None,
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
            dev_keys=env.get(DEV_KEYS_ENV) or None,
            bedrock_endpoint_url=env.get(BEDROCK_ENDPOINT_ENV) or None,
            functions_dir=Path(env[FUNCTIONS_DIR_ENV]) if env.get(FUNCTIONS_DIR_ENV) else None,
            reconcile_env=env.get(RECONCILE_SECONDS_ENV) or None,
            **values,
        )


def reconcile_interval(config: StackConfig) -> float:
    """The local reconciler's interval: CLAUDE_JOBS_RECONCILE_SECONDS (0.5 to 3600 s) when set,
    else `config.reconcile_seconds`; StackError for anything else."""
    raw = (config.reconcile_env or "").strip()
    if not raw:
        return config.reconcile_seconds
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 3600:
        raise StackError(f"{RECONCILE_SECONDS_ENV}={raw!r}: expected seconds, 0.5 to 3600")
    return value


#: Fair sharing settings the local stack takes from its environment (docs/jobs.md, "Fair sharing").
FAIR_SHARING_SETTINGS = ("tenant_max_pending", "tenant_max_running", "tenant_defer_seconds")


def fair_sharing_settings(environ: Mapping[str, str], workers: int) -> dict[str, Any]:
    """The stack's fair sharing: a tenant's running share is half its workers (at least one),
    so one tenant never holds them all; TENANT_MAX_PENDING, TENANT_MAX_RUNNING and
    TENANT_DEFER_SECONDS in the environment set them."""
    values: dict[str, Any] = {"tenant_max_running": max(1, workers // 2)}
    for name in FAIR_SHARING_SETTINGS:
        alias = Settings.model_fields[name].alias
        if alias and environ.get(alias):
            values[name] = environ[alias]
    return values


def settings_env(settings: Settings) -> dict[str, str]:
    """Settings as the environment variables a function reads them from (`from_env`)."""
    env = {}
    for name, info in Settings.model_fields.items():
        if not info.alias:
            continue
        value = getattr(settings, name)
        if isinstance(value, tuple | list):
            env[info.alias] = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            env[info.alias] = json.dumps(value)
        elif isinstance(value, bool):
            env[info.alias] = "true" if value else "false"
        else:
            env[info.alias] = str(value)
    return env


#: Run when their code is there: completion events and webhooks, S3 and EventBridge triggers.
OPTIONAL_FUNCTIONS = frozenset(
    {"notifier", "trigger", "webhook", "lostjobs", "expiry"}  # slots: issue 20
)
#: Every function of the definition table: the same handlers, memory and timeouts as in AWS.
FUNCTIONS = {name: f for name, f in DEFINED_FUNCTIONS.items() if name not in OPTIONAL_FUNCTIONS}
#: The local stack retries a failed webhook delivery after 1 s, 2 s, 4 s... (AWS: 30 s, 60 s...)
#: so that a developer sees the outcome of all its attempts within a minute.
LOCAL_WEBHOOK_RETRY_BASE_SECONDS = 1


class Environ:
    """Changes to os.environ, undone by `restore()`. A change of the AWS variables also drops
    boto3's default session, which keeps the credentials it resolved first: another stack in
    the same process (tests, the ledger) has other credentials and another endpoint."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        if name.startswith("AWS_"):
            _forget_default_session()

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        _forget_default_session()


def _forget_default_session() -> None:
    import boto3

    boto3.DEFAULT_SESSION = None

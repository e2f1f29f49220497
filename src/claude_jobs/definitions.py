"""The one definition table of the Lambda functions and the HTTP API's routes.

Every reader derives from it, so they cannot drift apart:
- the CDK app (`infra/`): each function's code folder, handler, memory, timeout, environment
  variables and description; the REST API's resources, methods, integrations, authorizer and
  request parameters;
- the local stack (`claude_jobs_tools.local`): the same functions with the same limits (it
  enforces the timeouts) and, in its HTTP front, the same routes;
- the API functions (:mod:`claude_jobs.api.routes`): which operation answers which route;
- the OpenAPI generator and the API Gateway event builder (`claude_jobs_tools`).

It holds facts of the code, not of a deployment: environment variables are named here, their
values are the deployment's (CDK) or the local stack's. Nothing here imports CDK or AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .resources import WEBHOOK_TIMEOUT_SECONDS, WORKER_TIMEOUT_SECONDS

_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Parameter:
    """An optional request parameter a route reads (its path parameters come from its path)."""

    name: str
    location: Literal["query", "header"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway resource path, e.g. /v1/jobs/{job_id}
    function: str  # the name of the function that serves it
    operation: str  # the route's handler in claude_jobs.api.routes and its OpenAPI operationId
    summary: str
    authorized: bool = True  # False: no API key (no authorizer runs)
    parameters: tuple[Parameter, ...] = ()
    json_body: bool = False  # a JSON object body (API Gateway checks that much)

    @property
    def path_parameters(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAMETER.findall(self.path))

    @property
    def resolver_path(self) -> str:
        """The path as Powertools' resolver spells it: /v1/jobs/<job_id>."""
        return _PATH_PARAMETER.sub(r"<\1>", self.path)

    @property
    def pattern(self) -> re.Pattern[str]:
        """Matches a request path; groups are named after the path parameters."""
        parts = _PATH_PARAMETER.split(self.path)  # literal, name, literal, …
        regex = "".join(
            f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
        )
        return re.compile(f"^{regex}$")

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when `path` is this route's path, else None."""
        found = self.pattern.match(path)
        return None if found is None else found.groupdict()


@dataclass(frozen=True)
class Function:
    name: str  # its folder in functions/ and its name in the local stack
    description: str
    memory_mb: int
    timeout_seconds: int
    #: The environment variables it reads (Settings aliases and Powertools' own).
    environment: tuple[str, ...]
    #: Variables it reads when the deployment has them (the model provider's: Anthropic's
    #: key secret and upstream, or Bedrock's models).
    optional_environment: tuple[str, ...] = ()
    handler: str = "handler.lambda_handler"  # <module in its folder>.<callable>
    package: Literal["zip", "image"] = "zip"  # zip on the shared layer, or a container image

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def handler_attr(self) -> str:
        return self.handler.rpartition(".")[2]

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(route for route in ROUTES if route.function == self.name)


# ---------------------------------------------------------------- routes (HTTP API v1)

_JOB_ID = "/v1/jobs/{job_id}"
_SESSION_ID = "/v1/sessions/{session_id}"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/health", "status", "health", "Liveness (no API key needed)", False),
    Route(
        "POST",
        "/v1/jobs",
        "submit",
        "submitJob",
        "Submit a job",
        parameters=(Parameter("Idempotency-Key", "header"),),
        json_body=True,
    ),
    Route(
        "GET",
        "/v1/jobs",
        "status",
        "listJobs",
        "List own jobs, newest first",
        parameters=(Parameter("limit", "query"), Parameter("next_token", "query")),
    ),
    Route(
        "GET",
        _JOB_ID,
        "status",
        "getJob",
        "Get a job (optionally long-polling until it is terminal)",
        parameters=(Parameter("wait", "query"), Parameter("If-None-Match", "header")),
    ),
    # Files (issue 13): a presigned PUT for one input file of later jobs.
    Route(
        "POST",
        "/v1/uploads",
        "submit",
        "createUpload",
        "Create an upload: a presigned PUT for one input file",
        json_body=True,
    ),
    Route(
        "GET",
        f"{_JOB_ID}/events",
        "status",
        "listJobEvents",
        "A job's progress events after a cursor (optionally long-polling for the next)",
        parameters=(Parameter("after", "query"), Parameter("wait", "query")),
    ),
    Route(
        "POST",
        f"{_JOB_ID}/cancel",
        "submit",
        "cancelJob",
        "Cancel a job (queued: at once; running: within seconds)",
    ),
    # Approvals (issue 23): a person's decision on a job's pending call.
    Route(
        "POST",
        f"{_JOB_ID}/approvals/{{approval_id}}",
        "submit",
        "decideApproval",
        "Decide a job's pending approval: allow or deny the call (the job is queued again)",
        json_body=True,
    ),
    Route(
        "GET",
        "/v1/approvals",
        "status",
        "listApprovals",
        "List own pending approvals, oldest first",
        parameters=(Parameter("limit", "query"), Parameter("next_token", "query")),
    ),
    Route(
        "GET",
        _SESSION_ID,
        "status",
        "getSession",
        "Get a session: the jobs of a conversation",
    ),
    Route(
        "DELETE",
        _SESSION_ID,
        "submit",
        "deleteSession",
        "Delete a session and its transcript (it can no longer be continued)",
    ),
    # GitHub events (issue 24): the App's webhook, authenticated by its signature.
    Route(
        "POST",
        "/v1/github/events",
        "submit",
        "githubEvent",
        "A GitHub App webhook delivery (signed with X-Hub-Signature-256; no API key)",
        False,
        parameters=(
            Parameter("X-Hub-Signature-256", "header"),
            Parameter("X-GitHub-Event", "header"),
            Parameter("X-GitHub-Delivery", "header"),
        ),
        # Not the job request's model: GitHub's payload, checked by the function (the
        # signature is over the raw body).
    ),
)

# ---------------------------------------------------------------- functions

#: Powertools' configuration, in every function.
POWERTOOLS_ENV = ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL")
#: What jobs may do: every function that validates or runs a job request.
JOB_POLICY_ENV = (
    "PERMITTED_TOOLS",
    "DEFAULT_MODEL",
    "MAX_BUDGET_USD_CAP",
    "JOB_RETENTION_DAYS",
    "SESSION_RETENTION_DAYS",
    "MAX_JOB_SECONDS",
    # Fair sharing: the pending cap at submit, the running share and its wait in the worker.
    "TENANT_MAX_PENDING",
    "TENANT_MAX_RUNNING",
    "TENANT_DEFER_SECONDS",
    # MCP servers: the URL prefixes a job's servers may use (checked at submit and in the
    # worker).
    "MCP_ALLOWED_URLS",
    # Repositories (issue 24): a job's repository must be on this Git host (submit, worker).
    "GITHUB_GIT_URL",
)
#: Files (issue 13): the upload cap and the job's input cap (submit), and the artifact caps.
#: GitHub events (issue 24): the webhook's secret, the handle and label, the tools of the
#: jobs they start, and what the events' REST calls need (the tenants' credentials, an App's
#: key).
GITHUB_EVENTS_ENV = (
    "GITHUB_WEBHOOK_SECRET_ID",
    "GITHUB_HANDLE",
    "GITHUB_LABEL",
    "GITHUB_ALLOWED_TOOLS",
    "GITHUB_API_URL",
    "GITHUB_SECRET_PREFIX",
    "GITHUB_APP_ID",
    "GITHUB_APP_KEY_SECRET_ID",
)
FILES_ENV = ("UPLOAD_MAX_BYTES", "INPUTS_MAX_BYTES", "ARTIFACTS_MAX_COUNT", "ARTIFACTS_MAX_BYTES")


def _serves(function: str) -> str:
    return ", ".join(f"{r.method} {r.path}" for r in ROUTES if r.function == function)


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function(
            "authorizer",
            "TOKEN authorizer: API key -> tenant",
            memory_mb=512,
            # It answers before every uncached request: one GetItem.
            timeout_seconds=5,
            environment=(*POWERTOOLS_ENV, "KEYS_TABLE"),
        ),
        Function(
            "submit",
            _serves("submit"),
            memory_mb=512,
            timeout_seconds=15,
            # The results bucket holds a job's documents over the item's inline budget.
            environment=(
                *POWERTOOLS_ENV,
                *JOB_POLICY_ENV,
                *FILES_ENV,
                "JOBS_TABLE",
                "JOBS_QUEUE_URL",
                "RESULTS_BUCKET",
            ),
            optional_environment=GITHUB_EVENTS_ENV,
        ),
        Function(
            "status",
            _serves("status"),
            memory_mb=512,
            # Long polls wait up to 20 s; API Gateway gives up at 29 s.
            timeout_seconds=28,
            environment=(
                *POWERTOOLS_ENV,
                "JOBS_TABLE",
                "EVENTS_TABLE",
                "RESULTS_BUCKET",
                # The generated key of GET /v1/jobs page tokens (issue 20).
                "PAGE_TOKEN_SECRET_ID",
            ),
        ),
        Function(
            "worker",
            "Runs one claude-jobs job with the Claude Code CLI",
            # 3 x its measured peak (infra/config.py); a deployment may size it
            # (worker_memory_mb).
            memory_mb=1024,
            timeout_seconds=WORKER_TIMEOUT_SECONDS,
            environment=(
                *POWERTOOLS_ENV,
                *JOB_POLICY_ENV,
                *FILES_ENV,
                "JOBS_TABLE",
                "EVENTS_TABLE",
                "RESULTS_BUCKET",
                # Warm start: the next job's CLI is started once a job is recorded.
                "WARM_START",
                # MCP servers: where the tenants' vault entries are (read for a job's tenant).
                "VAULT_SECRET_PREFIX",
                # Repositories: the REST API and the tenants' credentials (secret name prefix).
                "GITHUB_API_URL",
                "GITHUB_SECRET_PREFIX",
            ),
            optional_environment=(
                # The invocation's length when it is not the function's timeout (the local
                # stack's --invocation-seconds): the end-of-invocation margins scale with it.
                "WORKER_INVOCATION_SECONDS",
                "MODEL_PROVIDER",
                "BEDROCK_MODELS",
                "ANTHROPIC_SECRET_ID",
                "ANTHROPIC_BASE_URL",
                # A GitHub App: its id and the secret holding its private key.
                "GITHUB_APP_ID",
                "GITHUB_APP_KEY_SECRET_ID",
            ),
            package="image",
        ),
        Function(
            "trigger",
            "S3 objects and EventBridge events -> jobs",
            memory_mb=512,
            timeout_seconds=60,
            environment=(
                *POWERTOOLS_ENV,
                *JOB_POLICY_ENV,
                "JOBS_TABLE",
                "JOBS_QUEUE_URL",
                "INBOX_BUCKET",
                "TRIGGER_DLQ_URL",
                "RESULTS_BUCKET",
            ),
        ),
        Function(
            "notifier",
            "Jobs table stream -> completion events and webhook deliveries",
            memory_mb=512,
            # A batch of up to 10 records, each an event and at most one queued delivery.
            timeout_seconds=60,
            environment=(
                *POWERTOOLS_ENV,
                "JOBS_TABLE",
                "RESULTS_BUCKET",
                "EVENT_BUS_NAME",
                "WEBHOOK_QUEUE_URL",
            ),
            # A job a GitHub event started: its comment is updated when it ends.
            optional_environment=(
                "GITHUB_API_URL",
                "GITHUB_SECRET_PREFIX",
                "GITHUB_APP_ID",
                "GITHUB_APP_KEY_SECRET_ID",
            ),
        ),
        # Slots always come back (issue 20): jobs that ended without a worker's terminal
        # write give their tenant's pending and running slots back.
        Function(
            "lostjobs",
            "Jobs dead-letter queue -> such jobs end failed (worker_lost), slots freed",
            memory_mb=256,
            # A batch of a few messages, each two or three table calls.
            timeout_seconds=30,
            environment=(*POWERTOOLS_ENV, "JOBS_TABLE"),
        ),
        Function(
            "expiry",
            "Jobs table stream (REMOVE: TTL) -> a queued or running job's slots freed",
            memory_mb=256,
            timeout_seconds=30,
            environment=(*POWERTOOLS_ENV, "JOBS_TABLE"),
        ),
        Function(
            "reconciler",
            "Schedule -> re-drives jobs whose message vanished; re-counts tenants' slots; "
            "expires approvals",
            memory_mb=512,
            # One scan of the jobs table's unfinished jobs and usage counters a run.
            timeout_seconds=60,
            environment=(
                *POWERTOOLS_ENV,
                "JOBS_TABLE",
                "JOBS_QUEUE_URL",
                "RESULTS_BUCKET",
                "RECONCILE_GRACE_SECONDS",
            ),
        ),
        Function(
            "webhook",
            "Webhook queue -> signed deliveries, one attempt per message",
            memory_mb=512,
            # A batch of a few deliveries, each with its total deadline.
            timeout_seconds=WEBHOOK_TIMEOUT_SECONDS,
            environment=(
                *POWERTOOLS_ENV,
                "JOBS_TABLE",
                "WEBHOOK_SECRET_ID",
                "WEBHOOK_QUEUE_URL",
            ),
        ),
    )
}

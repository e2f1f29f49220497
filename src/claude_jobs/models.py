"""Request, job and response models, exactly per the HTTP API v1 contract."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from .approval_models import ApprovalDecision, PendingApproval, PendingApprovalView
from .filenames import FILENAME_PATTERN, MAX_FILENAME_CHARS
from .job_options import MAX_DOCUMENT_DEPTH as MAX_DOCUMENT_DEPTH
from .job_options import MAX_TIMEOUT_SECONDS as MAX_TIMEOUT_SECONDS
from .job_options import JobOptions as JobOptions
from .job_options import json_depth as json_depth
from .job_options import tool_base_name as tool_base_name
from .job_status import TERMINAL_STATUSES as TERMINAL_STATUSES
from .job_status import JobStatus as JobStatus
from .model_base import Model
from .progress_events import EVENT_TEXT_BYTES as EVENT_TEXT_BYTES
from .progress_events import EVENT_TOOL_INPUT_CHARS as EVENT_TOOL_INPUT_CHARS
from .progress_events import MAX_EVENTS_PER_JOB as MAX_EVENTS_PER_JOB
from .progress_events import EventPage as EventPage
from .progress_events import ProgressEvent as ProgressEvent
from .progress_events import StatusEvent as StatusEvent
from .progress_events import TextEvent as TextEvent
from .progress_events import ToolResultEvent as ToolResultEvent
from .progress_events import ToolUseEvent as ToolUseEvent
from .progress_events import UsageEvent as UsageEvent
from .repository_models import PullRequestInfo as PullRequestInfo
from .repository_models import PullRequestSkipped as PullRequestSkipped

MAX_BODY_BYTES = 256 * 1024
INLINE_RESULT_BYTES = 256 * 1024

#: Session ids are UUIDs (the CLI's own session ids), lower case.
SESSION_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _letters_other_than(word: str) -> str:
    """A regex for strings of ASCII letters as long as `word` that are not `word` (any case)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    options = []
    for i, char in enumerate(word):
        same = "".join(f"[{c.upper()}{c}]" for c in word[:i])
        other = "".join(c for c in letters if c != char)
        rest = len(word) - i - 1
        options.append(f"{same}[{other.upper()}{other}]" + (f"[A-Za-z]{{{rest}}}" if rest else ""))
    return "|".join(options)


#: A port, 1-65535, no leading zero.
_PORT = (
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
    r"|[1-9][0-9]{0,3}))?"
)
_REST = r"(?:[/?#][!-~]*)?"  # path, query, fragment: printable ASCII, no spaces
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: A top-level domain: 2-63 letters, but not `localhost` (a loopback name).
_TLD = rf"(?:[A-Za-z]{{2,8}}|[A-Za-z]{{10,63}}|{_letters_other_than('localhost')})"
#: What `webhook_url` may be, as the OpenAPI document states and the API enforces: https to a
#: DNS host name (no IP address, no credentials, no port 0), or — accepted by the local stack
#: only — http(s) to a loopback host. Where its name resolves is checked again when it is due.
WEBHOOK_URL_PATTERN = (
    rf"^(?:https://(?:{_LABEL}\.)+{_TLD}{_PORT}{_REST}"
    rf"|https?://(?:localhost|127\.0\.0\.1|\[::1\]){_PORT}{_REST})$"
)
_WEBHOOK_URL = re.compile(WEBHOOK_URL_PATTERN)

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MetadataValue = Annotated[str, StringConstraints(max_length=256)]

#: A job lists at most this many uploads in `inputs`.
MAX_JOB_INPUTS = 20
UPLOAD_ID_PATTERN = r"^upl_[a-z0-9]{26}$"
UploadId = Annotated[str, StringConstraints(pattern=UPLOAD_ID_PATTERN)]


class JobRequest(JobOptions):
    """Body of `POST /v1/jobs`. Unknown fields are rejected."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
    system_prompt: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=16)
    webhook_url: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        None,
        description="POSTed a signed job summary when the job ends: an https URL whose host is "
        "a DNS name (no IP address, no user or password); its name must not resolve to a "
        "private address when the delivery is made. The local stack also accepts http(s) to "
        "localhost, 127.0.0.1 or [::1] (a deployment refuses them with 422).",
        json_schema_extra={"pattern": WEBHOOK_URL_PATTERN},
    )
    session_id: Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)] | None = Field(
        None,
        description="Continue the conversation of an earlier job (its `session_id`) with this "
        "prompt. Another tenant's or an unknown (or deleted) session: 404 "
        "`session_not_found`; a session with a job queued or running: 409 `session_busy`.",
    )
    # -- files (issue 13): upload ids from `POST /v1/uploads`
    inputs: list[UploadId] = Field(
        default_factory=list,
        max_length=MAX_JOB_INPUTS,
        json_schema_extra={"uniqueItems": True},
        description="Upload ids (`POST /v1/uploads`) of the tenant's own uploaded files: each "
        "is placed in the job's working directory under its filename before the agent starts. "
        "Unique; their filenames must be unique too.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, url: str | None) -> str | None:
        if url is not None and not _WEBHOOK_URL.fullmatch(url):
            raise ValueError(
                "must be an https URL whose host is a DNS name (letters, digits, hyphens), "
                "with no user, password or IP address"
            )
        return url

    def options(self) -> JobOptions:
        return JobOptions.model_validate(self.model_dump(include=set(JobOptions.model_fields)))


class InputObject(Model):
    """An S3 object placed in the job's workspace before the agent starts: an S3 trigger's
    object, or an upload (`upload_id` set; it is placed under `filename`, and may not be
    larger than `size`, the size declared when it was created)."""

    bucket: str
    key: str
    version_id: str | None = None
    size: int = 0
    upload_id: str | None = None
    filename: str | None = None


# -- files (issue 13) ----------------------------------------------------------------------


class UploadRequest(Model):
    """Body of `POST /v1/uploads`."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        json_schema_extra={
            "minLength": 1,
            "maxLength": MAX_FILENAME_CHARS,
            "pattern": FILENAME_PATTERN,
        },
        description="The name the file gets in a job's working directory: one path component "
        "(no `/` or `\\`, not `.`/`..`, no leading `.` or `-`, no control characters), at "
        "most 200 characters and 255 UTF-8 bytes; `out` is reserved.",
    )
    size_bytes: int = Field(
        ge=0,
        description="Exact size of the file in bytes; at most the deployment's cap "
        "(`UPLOAD_MAX_BYTES`, default 100 MiB)",
    )

    @field_validator("size_bytes", mode="before")
    @classmethod
    def _json_integer(cls, value: Any) -> Any:
        """A JSON integer (`12`, `12.0`), never `true` or `"12"`."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError("must be an integer")
            return int(value)
        return value

    @field_validator("filename")
    @classmethod
    def _safe_filename(cls, name: str) -> str:
        from .filenames import filename_problem

        problem = filename_problem(name)
        if problem:
            raise ValueError(problem)
        return name


class UploadResponse(Model):
    """Answer of `POST /v1/uploads`: PUT the file's bytes to `upload_url` with `method` and
    exactly `headers` (the size is part of the signature)."""

    upload_id: str
    upload_url: str
    method: str = "PUT"
    headers: dict[str, str]
    #: When the upload expires: a job submitted later cannot use it, and its file is deleted.
    expires_at: datetime
    #: When `upload_url` stops accepting the PUT (earlier than `expires_at`).
    upload_url_expires_at: datetime
    filename: str
    size_bytes: int


class Artifact(Model):
    """A file the agent left under `out/`, stored with the job (the object key is derived)."""

    path: str  # "out/…"
    size_bytes: int


class ArtifactView(Artifact):
    download_url: str | None = None


class InputView(Model):
    upload_id: str
    filename: str
    size_bytes: int


class WebhookDelivery(Model):
    """The job's webhook and how its delivery went: `pending` until it is delivered (a 2xx
    answer) or has `failed` (every attempt did, or the URL was refused when it was due)."""

    url: str
    status: Literal["pending", "delivered", "failed"] = "pending"
    delivered: bool = False
    attempts: int = Field(0, description="POSTs made so far")
    last_error: str | None = Field(None, description="Why the last attempt failed")
    delivered_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _status_of_older_records(cls, data: Any) -> Any:
        """Records written before `status` existed: delivered, or failed after its attempts."""
        if isinstance(data, dict) and "status" not in data:
            if data.get("delivered"):
                return {**data, "status": "delivered"}
            if data.get("attempts") or data.get("last_error"):
                return {**data, "status": "failed"}
        return data


class Usage(Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    total_cost_usd: float = 0.0
    num_turns: int = 0
    duration_ms: int = 0


class JobResult(Model):
    """Stored result. `text` is inline when small; otherwise `s3_key` names the full text, of
    `text_bytes` bytes (None on results stored before it was recorded: those were all larger
    than the API's inline limit)."""

    text: str | None = None
    s3_key: str | None = None
    text_bytes: int | None = None
    structured: Any | None = None
    is_error: bool = False


class JobErrorInfo(Model):
    code: str
    message: str


class Job(Model):
    """A job as stored in the jobs table."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    tenant_id: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    prompt: str | None = None  # dropped from the item once the job is terminal
    system_prompt: str | None = None
    options: JobOptions
    metadata: dict[str, str] = Field(default_factory=dict)
    result: JobResult | None = None
    usage: Usage | None = None
    #: The spend journal (`JobRepository.journal_spend`): what the running attempt's calls
    #: may have cost and `usage` does not hold yet (its metered cost and the reservations of its
    #: calls in flight), in USD. A write that records `usage` removes it; one a dead worker
    #: left is added to `usage` by the next claim. Never shown by the API.
    unrecorded_usd: float | None = None
    error: JobErrorInfo | None = None
    cancel_requested: bool = False
    lease_until: int | None = None  # epoch seconds; a running job's claim is live until then
    source: str = "api"
    inputs: list[InputObject] = Field(default_factory=list)
    webhook: WebhookDelivery | None = None
    #: Files the agent left under out/ (uploaded when the job ended), and what was not uploaded
    #: and why (limits, special files).
    artifacts: list[Artifact] = Field(default_factory=list)
    artifact_notes: list[str] = Field(default_factory=list)
    #: Documents kept in the documents store rather than in the item: name → object key
    #: (see `claude_jobs.documents`).
    documents: dict[str, str] = Field(default_factory=dict)
    #: The conversation the job belongs to (given at submit, or a new one); None only on
    #: jobs stored before sessions existed.
    session_id: str | None = None
    #: Long jobs: runs started (one per worker invocation), the absolute deadline (first start
    #: + timeout_seconds), and whether it was re-queued at a segment's end (its next claim is
    #: not an attempt).
    segments: int = 0
    deadline_at: datetime | None = None
    continuing: bool = False
    #: Long jobs: the last segment's longest tool call (or how long a call its hard stop cut
    #: off had run), in ms: the next segment judges its first call by it. Never shown by the API.
    segment_tool_ms: int | None = None
    #: Approvals: the call that waits (while `awaiting_approval`), the decision the worker is
    #: to carry out next (until it has), and how many times the job's calls have waited.
    pending_approval: PendingApproval | None = None
    approval_decision: ApprovalDecision | None = None
    approval_waits: int = 0
    #: Repositories (issue 24): the pull request the worker opened, or why none was.
    pull_request: PullRequestInfo | None = None
    pull_request_skipped: str | None = None  # a PullRequestSkipped (a plain string in the item)
    #: GitHub events: the job whose pull request this one updates (a comment on that pull
    #: request). Set only by the service, after checking the stored job (same tenant, same
    #: session, same repository); the worker checks again and then pushes onto that job's
    #: branch (fast-forward only) instead of opening a pull request.
    updates_pull_request_of: str | None = None
    #: Such a follow-up's tip of that branch, fetched by its first segment: later segments
    #: fetch it again rather than the branch, so a branch moved meanwhile fails the push.
    pull_request_base_sha: str | None = None
    version: int = 0  # bumped by every write: a cheap, exact ETag seed


class SessionRecord(Model):
    """A conversation as stored (an item of the jobs table, `session#<id>`): its jobs, and
    the one that holds it (`active_job`, while queued or running)."""

    session_id: str
    tenant_id: str
    created_at: datetime
    updated_at: datetime
    job_ids: list[str] = Field(default_factory=list)
    active_job: str | None = None
    deleted: bool = False


# ---------------------------------------------------------------- responses


class JobLinks(Model):
    self: str


class SubmitResponse(Model):
    job_id: str
    status: JobStatus
    created_at: datetime
    links: JobLinks


class ResultView(Model):
    text: str | None = None
    download_url: str | None = None
    structured: Any | None = None
    is_error: bool = False


class JobView(Model):
    """Body of `GET /v1/jobs/{job_id}`."""

    job_id: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int
    request: JobOptions
    metadata: dict[str, str]
    result: ResultView | None = None
    usage: Usage | None = None
    error: JobErrorInfo | None = None
    webhook: WebhookDelivery | None = None
    session_id: str | None = None
    segments: int = Field(
        0,
        description="Worker invocations that have run the job: a job longer than one "
        "invocation is stopped at a turn boundary, re-queued and resumed (its `usage` adds "
        "up across segments)",
    )
    inputs: list[InputView] | None = None
    artifacts: list[ArtifactView] | None = None
    artifact_notes: list[str] | None = None
    pending_approval: PendingApprovalView | None = Field(
        None,
        description="While `awaiting_approval`: the call that waits for a decision "
        "(`POST /v1/jobs/{job_id}/approvals/{approval_id}`)",
    )
    pull_request: PullRequestInfo | None = Field(
        None,
        description="The pull request the worker opened with the agent's changes (a job "
        "with `pull_request` that succeeded with changes)",
    )
    pull_request_skipped: PullRequestSkipped | None = Field(
        None,
        description="Why a job that asked for a pull request has none: `no_changes` (the "
        "agent left the repository as it was)",
    )
    links: JobLinks


class SessionView(Model):
    """Body of `GET /v1/sessions/{session_id}`: the conversation's jobs, oldest first."""

    session_id: str
    created_at: datetime
    updated_at: datetime
    job_ids: list[str]


class JobList(Model):
    items: list[JobView]
    next_token: str | None = None


class ProblemFieldError(Model):
    loc: list[str | int]
    msg: str


class Problem(Model):
    """RFC 9457 problem details, as every 4xx/5xx body."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str
    errors: list[ProblemFieldError] | None = None

"""Request, job and response models, exactly per the HTTP API v1 contract."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_BODY_BYTES = 256 * 1024
INLINE_RESULT_BYTES = 256 * 1024
#: No deployment lets a job run longer than this (its `max_job_seconds` is at most this).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
#: Free-form JSON documents (an output schema, a structured result) nest at most this deep.
MAX_DOCUMENT_DEPTH = 64


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


_TOOL_RE = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z0-9_]*(?:__[A-Za-z0-9_-]+)*)(?:\((?P<rule>[^()]*)\))?$"
)
_MODEL_RE = r"^[A-Za-z0-9][A-Za-z0-9._:@\[\]/-]{0,127}$"
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


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED}
)


def tool_base_name(tool: str) -> str:
    """`Bash(git status:*)` → `Bash`: the tool a permission rule applies to."""
    match = _TOOL_RE.match(tool)
    return match.group("name") if match else tool


class JobOptions(BaseModel):
    """Everything about a job's run except the prompt texts and metadata."""

    model_config = ConfigDict(extra="forbid")

    allowed_tools: list[str] = Field(
        default_factory=lambda: ["Read", "Glob", "Grep"],
        max_length=64,
        description="Tools the agent may use; `[]` = none. Each must be in the deployment's "
        "permitted set. A permission rule such as `Bash(git status:*)` is accepted when its "
        "tool is permitted.",
    )
    max_turns: int = Field(25, ge=1, le=100)
    timeout_seconds: int = Field(
        300,
        ge=10,
        le=MAX_TIMEOUT_SECONDS,
        description="The job's deadline, from its first start: at most the deployment's "
        "`max_job_seconds` (default 14,400). A job longer than one worker invocation runs in "
        "segments (see `segments`).",
    )
    max_budget_usd: float | None = Field(None, gt=0, description="≤ the deployment's cap")
    model: Annotated[str, StringConstraints(pattern=_MODEL_RE)] | None = Field(
        None, description="Defaults to the deployment's model"
    )
    output_schema: dict[str, Any] | None = Field(
        None,
        description="A JSON Schema object; the result then carries `structured`. Any valid "
        f"JSON within the body's size, nested at most {MAX_DOCUMENT_DEPTH} levels; it is kept "
        "and returned exactly as sent.",
        json_schema_extra={"x-max-depth": MAX_DOCUMENT_DEPTH},
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
        return JobOptions.model_validate(
            self.model_dump(
                exclude={"prompt", "system_prompt", "metadata", "webhook_url", "session_id"}
            )
        )


class InputObject(BaseModel):
    """An S3 object placed in the job's workspace before the agent starts (S3 trigger)."""

    bucket: str
    key: str
    version_id: str | None = None
    size: int = 0


class WebhookDelivery(BaseModel):
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


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    total_cost_usd: float = 0.0
    num_turns: int = 0
    duration_ms: int = 0


class JobResult(BaseModel):
    """Stored result. `text` is inline when small; otherwise `s3_key` names the full text, of
    `text_bytes` bytes (None on results stored before it was recorded: those were all larger
    than the API's inline limit)."""

    text: str | None = None
    s3_key: str | None = None
    text_bytes: int | None = None
    structured: Any | None = None
    is_error: bool = False


class JobErrorInfo(BaseModel):
    code: str
    message: str


class Job(BaseModel):
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
    error: JobErrorInfo | None = None
    cancel_requested: bool = False
    lease_until: int | None = None  # epoch seconds; a running job's claim is live until then
    source: str = "api"
    inputs: list[InputObject] = Field(default_factory=list)
    webhook: WebhookDelivery | None = None
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
    version: int = 0  # bumped by every write: a cheap, exact ETag seed


class SessionRecord(BaseModel):
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


class JobLinks(BaseModel):
    self: str


class SubmitResponse(BaseModel):
    job_id: str
    status: JobStatus
    created_at: datetime
    links: JobLinks


class ResultView(BaseModel):
    text: str | None = None
    download_url: str | None = None
    structured: Any | None = None
    is_error: bool = False


class JobView(BaseModel):
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
    links: JobLinks


class SessionView(BaseModel):
    """Body of `GET /v1/sessions/{session_id}`: the conversation's jobs, oldest first."""

    session_id: str
    created_at: datetime
    updated_at: datetime
    job_ids: list[str]


class JobList(BaseModel):
    items: list[JobView]
    next_token: str | None = None


# ---------------------------------------------------------------- progress events

#: At most this many events are kept per job (the worker stops storing beyond it).
MAX_EVENTS_PER_JOB = 1000
#: A `text` event's text is cut to this many UTF-8 bytes (`truncated` says so).
EVENT_TEXT_BYTES = 2048
#: A `tool_use` event's input (compact JSON) is cut to this many characters.
EVENT_TOOL_INPUT_CHARS = 512


class _Event(BaseModel):
    seq: int = Field(ge=1, description="Strictly increasing within the job")
    at: datetime


class StatusEvent(_Event):
    """The job moved to `status` (`segment`: the worker invocation it runs in, when known)."""

    type: Literal["status"] = "status"
    status: JobStatus
    segment: int | None = None


class TextEvent(_Event):
    """Text the agent wrote (at most 2 KiB; `truncated` when it was longer)."""

    type: Literal["text"] = "text"
    text: str
    truncated: bool = False


class ToolUseEvent(_Event):
    """The agent called `tool`; `input` is its input as compact JSON, at most 512 chars."""

    type: Literal["tool_use"] = "tool_use"
    tool: str
    input: str


class ToolResultEvent(_Event):
    type: Literal["tool_result"] = "tool_result"
    tool: str
    is_error: bool = False


class UsageEvent(_Event):
    """The job's usage so far (cumulative)."""

    type: Literal["usage"] = "usage"
    input_tokens: int = 0
    output_tokens: int = 0
    total_cost_usd: float = 0.0


ProgressEvent = Annotated[
    StatusEvent | TextEvent | ToolUseEvent | ToolResultEvent | UsageEvent,
    Field(discriminator="type"),
]


class EventPage(BaseModel):
    """Body of `GET /v1/jobs/{job_id}/events`."""

    items: list[ProgressEvent]
    #: Pass as `after` to get only newer events (currently the decimal `seq` of the last
    #: event seen; treat it as opaque).
    next_cursor: str
    #: The job is terminal and every event has been returned: nothing more will come.
    done: bool


class ProblemFieldError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every 4xx/5xx body."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str
    errors: list[ProblemFieldError] | None = None

"""Progress events of a job (`GET /v1/jobs/{job_id}/events`), per the contract."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .job_status import JobStatus
from .model_base import Model

#: At most this many events are kept per job (the worker stops storing beyond it).
MAX_EVENTS_PER_JOB = 1000
#: A `text` event's text is cut to this many UTF-8 bytes (`truncated` says so).
EVENT_TEXT_BYTES = 2048
#: A `tool_use` event's input (compact JSON) is cut to this many characters.
EVENT_TOOL_INPUT_CHARS = 512


class _Event(Model):
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


class ApprovalRequestedEvent(_Event):
    """A call waits for a person's decision (the job is `awaiting_approval`): the pending
    approval's id, tool, input (JSON, at most 2 KiB), the rule it matched (None: a question,
    `AskUserQuestion`) and when it expires."""

    type: Literal["approval_requested"] = "approval_requested"
    approval_id: str
    tool: str
    input: str
    rule: str | None = None
    expires_at: datetime


ProgressEvent = Annotated[
    StatusEvent | TextEvent | ToolUseEvent | ToolResultEvent | UsageEvent | ApprovalRequestedEvent,
    Field(discriminator="type"),
]


class EventPage(Model):
    """Body of `GET /v1/jobs/{job_id}/events`."""

    items: list[ProgressEvent]
    #: Pass as `after` to get only newer events (currently the decimal `seq` of the last
    #: event seen; treat it as opaque).
    next_cursor: str
    #: The job is terminal and every event has been returned: nothing more will come.
    done: bool

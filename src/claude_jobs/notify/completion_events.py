"""The events a job publishes on the EventBridge bus (the completion bus).

Source `claude-jobs`; detail-type `Job Succeeded | Job Failed | Job Timed Out | Job Cancelled`
when it ends: the detail carries ids, status, times, usage, metadata, the error and where the
result is. Detail-type `job.awaiting_approval` when a call of it waits for a person (once per
approval id): ids, status, metadata and the pending approval's view. Neither ever carries a
secret, nor the prompt; the result text only when it is small.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from ..approval_models import PendingApprovalView
from ..models import Job, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "claude-jobs"
DETAIL_TYPES: dict[JobStatus, str] = {
    JobStatus.SUCCEEDED: "Job Succeeded",
    JobStatus.FAILED: "Job Failed",
    JobStatus.TIMED_OUT: "Job Timed Out",
    JobStatus.CANCELLED: "Job Cancelled",
}
#: The event (and webhook type) of a job whose call waits for a person.
AWAITING_APPROVAL_TYPE = "job.awaiting_approval"
#: Artifacts named in an event at most (the rest are counted in `artifacts_omitted`).
EVENT_ARTIFACTS = 100
#: A result text (or structured output) at most this large, as UTF-8 JSON, rides in the event.
SMALL_RESULT_BYTES = 8 * 1024


class EventPublishError(Exception):
    """EventBridge did not accept the event."""


def _small(value: Any) -> bool:
    return len(json.dumps(value, ensure_ascii=False).encode()) <= SMALL_RESULT_BYTES


def result_summary(job: Job, results_bucket: str) -> dict[str, Any] | None:
    result = job.result
    if result is None:
        return None
    summary: dict[str, Any] = {"is_error": result.is_error}
    if result.s3_key:
        summary.update(location="s3", s3_bucket=results_bucket, s3_key=result.s3_key)
        if result.text_bytes is not None:
            summary["text_bytes"] = result.text_bytes
    elif result.text is not None:
        summary["location"] = "inline"
        size = len(result.text.encode())
        summary["text_bytes"] = size
        if size <= SMALL_RESULT_BYTES:
            summary["text"] = result.text
    else:
        summary["location"] = "none"
    if result.structured is not None and _small(result.structured):
        summary["structured"] = result.structured
    return summary


def job_summary(job: Job, results_bucket: str = "") -> dict[str, Any]:
    """What a finished job tells the world: the event's detail and the webhook's body."""

    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "job_id": job.job_id,
        "tenant_id": job.tenant_id,
        "status": job.status.value,
        "source": job.source,
        "created_at": when(job.created_at),
        "started_at": when(job.started_at),
        "finished_at": when(job.finished_at),
        "attempts": job.attempts,
        "metadata": dict(job.metadata),
        "usage": job.usage.model_dump(mode="json") if job.usage else None,
        "error": job.error.model_dump(mode="json") if job.error else None,
        "result": result_summary(job, results_bucket),
        # Files: what the agent left under out/ (download URLs: GET /v1/jobs/{id}); at most
        # EVENT_ARTIFACTS of them, so that an event stays far below EventBridge's 256 KB.
        "artifacts": [
            {"path": a.path, "size_bytes": a.size_bytes} for a in job.artifacts[:EVENT_ARTIFACTS]
        ],
        **(
            {"artifacts_omitted": len(job.artifacts) - EVENT_ARTIFACTS}
            if len(job.artifacts) > EVENT_ARTIFACTS
            else {}
        ),
        # Repositories: the pull request the worker opened, or why there is none
        **({"pull_request": job.pull_request.model_dump(mode="json")} if job.pull_request else {}),
        **({"pull_request_skipped": job.pull_request_skipped} if job.pull_request_skipped else {}),
        "links": {"self": f"/v1/jobs/{job.job_id}"},
    }


def approval_summary(job: Job) -> dict[str, Any]:
    """What a job waiting for a decision tells the world: the event's detail and the
    webhook's body (the pending approval as the job view shows it: no `tool_use_id`)."""
    if job.pending_approval is None:
        raise ValueError(f"job {job.job_id} waits on no approval")
    pending = PendingApprovalView.of(job.pending_approval).model_dump(mode="json")
    return {
        "job_id": job.job_id,
        "tenant_id": job.tenant_id,
        "status": job.status.value,
        "source": job.source,
        "created_at": job.created_at.isoformat(),
        "session_id": job.session_id,
        "metadata": dict(job.metadata),
        "pending_approval": pending,
        "approval_waits": job.approval_waits,
        "usage": job.usage.model_dump(mode="json") if job.usage else None,
        "links": {
            "self": f"/v1/jobs/{job.job_id}",
            "decide": f"/v1/jobs/{job.job_id}/approvals/{pending['approval_id']}",
        },
    }


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None: ...


class EventBridgePublisher:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        if not bus_name:
            raise ValueError("EVENT_BUS_NAME is not set")
        self._client = client
        self._bus = bus_name

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        response = self._client.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, ensure_ascii=False, separators=(",", ":")),
                    "EventBusName": self._bus,
                    "Resources": resources,
                }
            ]
        )
        if response.get("FailedEntryCount", 0):
            entry = response["Entries"][0]
            raise EventPublishError(
                f"{entry.get('ErrorCode', 'error')}: {entry.get('ErrorMessage', '')}"
            )

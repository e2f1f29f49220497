"""One jobs-table stream record → the completion event and the webhook's delivery, once per job;
or the `job.awaiting_approval` event and webhook, once per approval.

A record counts when its old image is a non-terminal job and its new image a terminal one: every
way a job ends (the worker's finish, cancelling a queued job, a dispatch failure) writes exactly
one such record. The webhook is not called here: its delivery goes to the webhook queue (one
message), so a slow or failing receiver never holds up the stream. Recording the delivery's
outcome writes records whose images are both terminal, which are ignored, as are idempotency
items, inserts and deletions (TTL).

Stream processing is at-least-once: a record retried after a fault may publish its event again.
Consumers de-duplicate on `detail.job_id` (one terminal status per job).

A record whose new image is `awaiting_approval` with a pending approval the old image did not
have (running → awaiting_approval; a later wait brings a new approval id) is a request for a
decision: its notice is claimed first (:mod:`claude_jobs.notify.approval_notices`), so a
redelivered record publishes nothing twice; a fault while publishing gives the claim back and
the record is retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..adapters.jobs_table import item_to_job
from ..documents import ARTIFACTS, RESULT_TEXT, STRUCTURED, JobDocuments
from ..models import Job, JobStatus
from ..observability import get_logger
from .approval_notices import ApprovalNotices
from .completion_events import (
    AWAITING_APPROVAL_TYPE,
    DETAIL_TYPES,
    SMALL_RESULT_BYTES,
    EventPublisher,
    approval_summary,
    job_summary,
)
from .delivery import DeliveryQueue, WebhookMessage


class GitHubComments(Protocol):
    """The comment of a job a GitHub event started (`claude_jobs.github.comments`)."""

    def running(self, job: Job) -> bool: ...

    def finished(self, job: Job) -> bool: ...


@dataclass(frozen=True)
class Notification:
    job_id: str
    detail_type: str
    webhook_queued: bool = False  # a delivery was sent to the webhook queue


def _status(image: Mapping[str, Any] | None) -> JobStatus | None:
    if not image or "status" not in image:
        return None
    raw = image["status"].get("S") if isinstance(image["status"], Mapping) else None
    try:
        return JobStatus(raw) if raw else None
    except ValueError:
        return None


def is_completion(old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None) -> bool:
    """A job's one transition into a terminal status (images in DynamoDB JSON)."""
    new = _status(new_image)
    if new is None or not new.is_terminal:
        return False
    old = _status(old_image)
    return old is None or not old.is_terminal


def _approval_id(image: Mapping[str, Any] | None) -> str | None:
    """The pending approval's id in an image (`pending_approval` is JSON text)."""
    raw = (image or {}).get("pending_approval")
    text = raw.get("S") if isinstance(raw, Mapping) else None
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    found = value.get("approval_id") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def approval_requested(
    old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None
) -> str | None:
    """The approval id a job began to wait on in this record (images in DynamoDB JSON)."""
    if _status(new_image) is not JobStatus.AWAITING_APPROVAL:
        return None
    new_id = _approval_id(new_image)
    if new_id is None:
        return None
    if _status(old_image) is JobStatus.AWAITING_APPROVAL and _approval_id(old_image) == new_id:
        return None
    return new_id


def _body(event_type: str, summary: dict[str, Any]) -> str:
    return json.dumps({"type": event_type, **summary}, ensure_ascii=False, separators=(",", ":"))


class Notifier:
    def __init__(
        self,
        publisher: EventPublisher,
        deliveries: DeliveryQueue,
        *,
        results_bucket: str = "",
        documents: JobDocuments | None = None,
        notices: ApprovalNotices | None = None,
        github_comments: Callable[[], GitHubComments | None] | None = None,
    ) -> None:
        self._publisher = publisher
        self._deliveries = deliveries
        self._results_bucket = results_bucket
        self._documents = documents or JobDocuments(None)
        self._notices = notices
        self._github_comments = github_comments

    def process(
        self, old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None
    ) -> Notification | None:
        """Act on one stream record; None when it is neither a completion nor a request for a
        decision. Faults raise."""
        approval_id = approval_requested(old_image, new_image)
        if approval_id is not None:
            assert new_image is not None
            return self._approval(approval_id, new_image)
        if not is_completion(old_image, new_image):
            self._github_running(old_image, new_image)
            return None
        assert new_image is not None
        # What the event carries of the result: small documents read back from the store.
        job = self._documents.load(
            item_to_job(new_image),
            (STRUCTURED, RESULT_TEXT, ARTIFACTS),
            text_limit=SMALL_RESULT_BYTES,
        )
        detail_type = DETAIL_TYPES[job.status]
        summary = job_summary(job, self._results_bucket)
        self._publisher.publish(detail_type, summary, [])
        get_logger().info(
            "published %s",
            detail_type,
            extra={"job_id": job.job_id, "tenant_id": job.tenant_id, "status": job.status.value},
        )
        if self._github_comments is not None and job.source == "github":
            # A job a GitHub event started: its comment tells how it ended (never raises).
            comments = self._github_comments()
            if comments is not None:
                comments.finished(job)
        if job.webhook is None or job.webhook.status != "pending":
            return Notification(job.job_id, detail_type)
        body = _body(detail_type, summary)
        self._deliveries.send(
            WebhookMessage(
                job_id=job.job_id, url=job.webhook.url, event_type=detail_type, body=body
            )
        )
        return Notification(job.job_id, detail_type, webhook_queued=True)

    def _github_running(
        self, old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None
    ) -> None:
        """A job a GitHub event started began to run: its comment says so (never raises)."""
        if self._github_comments is None or new_image is None:
            return
        if _status(new_image) is not JobStatus.RUNNING:
            return
        if _status(old_image) not in (JobStatus.QUEUED, None):
            return
        job = item_to_job(new_image)
        if job.source != "github":
            return
        comments = self._github_comments()
        if comments is not None:
            comments.running(job)

    def _approval(self, approval_id: str, new_image: Mapping[str, Any]) -> Notification | None:
        job = item_to_job(new_image)
        hook = job.webhook.url if job.webhook is not None else None
        log = get_logger()
        context = {"job_id": job.job_id, "tenant_id": job.tenant_id, "approval_id": approval_id}
        if self._notices is None:
            log.warning("no approval notices: %s not published", AWAITING_APPROVAL_TYPE)
            return None
        if not self._notices.claim(job.job_id, approval_id, webhook=hook is not None):
            log.info("approval already noticed, or no longer pending", extra=context)
            return None
        summary = approval_summary(job)
        try:
            self._publisher.publish(AWAITING_APPROVAL_TYPE, summary, [])
            if hook is not None:
                self._deliveries.send(
                    WebhookMessage(
                        job_id=job.job_id,
                        url=hook,
                        event_type=AWAITING_APPROVAL_TYPE,
                        body=_body(AWAITING_APPROVAL_TYPE, summary),
                        approval_id=approval_id,
                    )
                )
        except Exception:
            try:  # the record is retried: it must find the notice free again
                self._notices.release(job.job_id, approval_id)
            except Exception as exc:
                log.error("approval notice not released: %s", type(exc).__name__, extra=context)
            raise
        log.info("published %s", AWAITING_APPROVAL_TYPE, extra=context)
        return Notification(job.job_id, AWAITING_APPROVAL_TYPE, webhook_queued=hook is not None)

"""One jobs-table stream record → the completion event and the webhook, once per job.

A record counts when its old image is a non-terminal job and its new image a terminal one: every
way a job ends (the worker's finish, cancelling a queued job, a dispatch failure) writes exactly
one such record. Recording the webhook's delivery writes another record whose images are both
terminal, which is ignored, as are idempotency items, inserts and deletions (TTL).

Stream processing is at-least-once: a record retried after a fault may publish its event again.
Consumers de-duplicate on `detail.job_id` (one terminal status per job).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..adapters.jobs_table import item_to_job
from ..documents import ARTIFACTS, RESULT_TEXT, STRUCTURED, JobDocuments
from ..errors import JobNotFoundError, TransitionConflictError
from ..models import TERMINAL_STATUSES, Job, JobStatus
from ..observability import get_logger
from ..ports import JobRepository
from .completion_events import DETAIL_TYPES, SMALL_RESULT_BYTES, EventPublisher, job_summary
from .webhooks import WebhookSender, tenant_secret


@dataclass(frozen=True)
class Notification:
    job_id: str
    detail_type: str
    webhook_delivered: bool | None = None  # None: the job has no webhook (or it was done)
    webhook_attempts: int = 0


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


class Notifier:
    def __init__(
        self,
        repo: JobRepository,
        publisher: EventPublisher,
        sender: WebhookSender,
        master_key: Callable[[], str],
        *,
        results_bucket: str = "",
        documents: JobDocuments | None = None,
    ) -> None:
        self._repo = repo
        self._publisher = publisher
        self._sender = sender
        self._master_key = master_key
        self._results_bucket = results_bucket
        self._documents = documents or JobDocuments(None)

    def process(
        self, old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None
    ) -> Notification | None:
        """Act on one stream record; None when it is not a completion. Faults raise."""
        if not is_completion(old_image, new_image):
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
        if job.webhook is None:
            return Notification(job.job_id, detail_type)
        return self._webhook(job, detail_type, summary)

    def _webhook(self, job: Job, detail_type: str, summary: dict[str, Any]) -> Notification:
        current = self._repo.get(job.job_id)
        hook = current.webhook if current is not None else None
        if hook is None or hook.delivered or hook.attempts > 0:
            # Already done by an earlier run of this record (stream retries are at-least-once).
            return Notification(job.job_id, detail_type)
        body = json.dumps(
            {"type": detail_type, **summary}, ensure_ascii=False, separators=(",", ":")
        ).encode()
        secret = tenant_secret(self._master_key(), job.tenant_id)
        delivery = self._sender.deliver(
            hook.url, body, secret, event_type=detail_type, job_id=job.job_id
        )
        log = get_logger().info if delivery.delivered else get_logger().warning
        log(
            "webhook %s after %d attempt(s)",
            "delivered" if delivery.delivered else "failed",
            delivery.attempts,
            extra={"job_id": job.job_id, "last_error": delivery.last_error},
        )
        try:
            self._repo.update(
                job.job_id,
                set_fields={"webhook": delivery.model_dump(mode="json", exclude_none=True)},
                expected_status=sorted(TERMINAL_STATUSES),
            )
        except (TransitionConflictError, JobNotFoundError):  # deleted meanwhile (TTL)
            get_logger().warning("webhook delivery not recorded", extra={"job_id": job.job_id})
        return Notification(
            job.job_id,
            detail_type,
            webhook_delivered=delivery.delivered,
            webhook_attempts=delivery.attempts,
        )

"""One jobs-table stream record → the completion event and the webhook's delivery, once per job.

A record counts when its old image is a non-terminal job and its new image a terminal one: every
way a job ends (the worker's finish, cancelling a queued job, a dispatch failure) writes exactly
one such record. The webhook is not called here: its delivery goes to the webhook queue (one
message), so a slow or failing receiver never holds up the stream. Recording the delivery's
outcome writes records whose images are both terminal, which are ignored, as are idempotency
items, inserts and deletions (TTL).

Stream processing is at-least-once: a record retried after a fault may publish its event again.
Consumers de-duplicate on `detail.job_id` (one terminal status per job).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..adapters.jobs_table import item_to_job
from ..documents import RESULT_TEXT, STRUCTURED, JobDocuments
from ..models import JobStatus
from ..observability import get_logger
from .completion_events import DETAIL_TYPES, SMALL_RESULT_BYTES, EventPublisher, job_summary
from .delivery import DeliveryQueue, WebhookMessage


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


class Notifier:
    def __init__(
        self,
        publisher: EventPublisher,
        deliveries: DeliveryQueue,
        *,
        results_bucket: str = "",
        documents: JobDocuments | None = None,
    ) -> None:
        self._publisher = publisher
        self._deliveries = deliveries
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
            item_to_job(new_image), (STRUCTURED, RESULT_TEXT), text_limit=SMALL_RESULT_BYTES
        )
        detail_type = DETAIL_TYPES[job.status]
        summary = job_summary(job, self._results_bucket)
        self._publisher.publish(detail_type, summary, [])
        get_logger().info(
            "published %s",
            detail_type,
            extra={"job_id": job.job_id, "tenant_id": job.tenant_id, "status": job.status.value},
        )
        if job.webhook is None or job.webhook.status != "pending":
            return Notification(job.job_id, detail_type)
        body = json.dumps(
            {"type": detail_type, **summary}, ensure_ascii=False, separators=(",", ":")
        )
        self._deliveries.send(
            WebhookMessage(
                job_id=job.job_id, url=job.webhook.url, event_type=detail_type, body=body
            )
        )
        return Notification(job.job_id, detail_type, webhook_queued=True)

"""Webhook deliveries: one queue message per finished job with a webhook, one attempt per
receive of it.

The notifier sends the message (:class:`SqsDeliveryQueue`); the webhook function hands each
one it receives to :meth:`WebhookDeliverer.deliver`, which makes one signed POST within the
delivery deadline and records the outcome on the job (`webhook`: status, attempts, last
error, delivered_at). A failed attempt comes back after a backoff (the base, then twice, four
times... as long); after the queue's `maxReceiveCount` receives the job's delivery is
`failed` and the message goes to the webhook dead-letter queue. A URL that may not be called
(refused) fails at once: trying again cannot help.

Deliveries are at least once: a message sent twice (the stream is at least once too) is
skipped once the job's webhook is delivered; receivers de-duplicate on the job id header.

A `job.awaiting_approval` delivery (a message with `approval_id`) goes through the same
attempts and backoff, signed the same way; its outcome is recorded on the approval's notice
(:mod:`claude_jobs.notify.approval_notices`), not on the job's `webhook`, which stays the
terminal delivery's. A notice replaced by a later wait's ends the older delivery (skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from ..clock import utcnow
from ..errors import JobNotFoundError, TransitionConflictError
from ..models import TERMINAL_STATUSES, WebhookDelivery
from ..observability import get_logger
from ..ports import JobRepository
from ..resources import WEBHOOK_MAX_ATTEMPTS
from .approval_notices import ApprovalNotice, ApprovalNotices
from .webhooks import Attempt, WebhookSender, tenant_secret

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: The longest pause between two attempts (SQS's longest visibility timeout is 12 h).
MAX_RETRY_SECONDS = 900


class WebhookMessage(BaseModel):
    """One delivery to make: the body is the signed summary, exactly as it will be POSTed."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    url: str
    event_type: str
    body: str
    #: A `job.awaiting_approval` delivery: the approval it tells of.
    approval_id: str | None = None


class DeliveryQueue(Protocol):
    def send(self, message: WebhookMessage) -> None: ...


class SqsDeliveryQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, message: WebhookMessage) -> None:
        if not self._url:
            raise ValueError("WEBHOOK_QUEUE_URL is not set")
        self._client.send_message(QueueUrl=self._url, MessageBody=message.model_dump_json())


@dataclass(frozen=True)
class DeliveryOutcome:
    action: Literal["delivered", "skipped", "retry", "failed"]
    attempts: int = 0
    error: str | None = None
    #: retry: seconds until the message comes back.
    retry_in: int | None = None
    #: failed: the message goes to the dead-letter queue (its attempts ran out) rather than
    #: being dropped (a refused URL).
    dead_letter: bool = False


class WebhookDeliverer:
    def __init__(
        self,
        repo: JobRepository,
        sender: WebhookSender,
        master_key: Callable[[], str],
        *,
        retry_base_seconds: int = 30,
        max_attempts: int = WEBHOOK_MAX_ATTEMPTS,
        clock: Callable[[], datetime] = utcnow,
        notices: ApprovalNotices | None = None,
    ) -> None:
        self._notices = notices
        self._repo = repo
        self._sender = sender
        self._master_key = master_key
        self._retry_base = retry_base_seconds
        self._max_attempts = max_attempts
        self._clock = clock

    def deliver(self, message: WebhookMessage, receives: int) -> DeliveryOutcome:
        """Make the delivery's attempt number `receives` (the message's receive count)."""
        job = self._repo.get(message.job_id)
        hook = job.webhook if job is not None else None
        if job is None or hook is None or hook.url != message.url:
            get_logger().warning("webhook for a job that is gone", extra={"job_id": message.job_id})
            return DeliveryOutcome("skipped")
        if message.approval_id is not None:
            return self._deliver_notice(message, receives, job.tenant_id)
        if hook.status == "delivered":  # a second message for a delivery already made
            return DeliveryOutcome("skipped", hook.attempts)
        attempt = self._attempt(message, job.tenant_id)
        attempts = hook.attempts + (0 if attempt.refused else 1)
        if attempt.delivered:
            outcome = DeliveryOutcome("delivered", attempts)
            state = WebhookDelivery(
                url=hook.url,
                status="delivered",
                delivered=True,
                attempts=attempts,
                delivered_at=self._clock(),
            )
        elif attempt.refused or receives >= self._max_attempts:
            outcome = DeliveryOutcome(
                "failed", attempts, attempt.error, dead_letter=not attempt.refused
            )
            state = WebhookDelivery(
                url=hook.url, status="failed", attempts=attempts, last_error=attempt.error
            )
        else:
            delay = min(self._retry_base * 2 ** (max(receives, 1) - 1), MAX_RETRY_SECONDS)
            outcome = DeliveryOutcome("retry", attempts, attempt.error, retry_in=delay)
            state = WebhookDelivery(
                url=hook.url, status="pending", attempts=attempts, last_error=attempt.error
            )
        self._record(job.job_id, state)
        log = get_logger().info if attempt.delivered else get_logger().warning
        log(
            "webhook %s after %d attempt(s)",
            outcome.action,
            attempts,
            extra={"job_id": job.job_id, "last_error": attempt.error, "retry_in": outcome.retry_in},
        )
        return outcome

    def _attempt(self, message: WebhookMessage, tenant_id: str) -> Attempt:
        # The tenant is the stored job's: a message cannot choose whose secret signs it.
        secret = tenant_secret(self._master_key(), tenant_id)
        return self._sender.attempt(
            message.url,
            message.body.encode(),
            secret,
            event_type=message.event_type,
            job_id=message.job_id,
        )

    def _deliver_notice(
        self, message: WebhookMessage, receives: int, tenant_id: str
    ) -> DeliveryOutcome:
        """A `job.awaiting_approval` delivery, recorded on the approval's notice."""
        assert message.approval_id is not None
        notice = self._notices.get(message.job_id) if self._notices is not None else None
        if notice is None or notice.approval_id != message.approval_id:
            get_logger().info("approval webhook superseded", extra={"job_id": message.job_id})
            return DeliveryOutcome("skipped")
        if notice.webhook == "delivered":
            return DeliveryOutcome("skipped", notice.attempts)
        attempt = self._attempt(message, tenant_id)
        attempts = notice.attempts + (0 if attempt.refused else 1)
        if attempt.delivered:
            outcome = DeliveryOutcome("delivered", attempts)
            state = ApprovalNotice(
                notice.approval_id, "delivered", attempts, delivered_at=self._clock().isoformat()
            )
        elif attempt.refused or receives >= self._max_attempts:
            outcome = DeliveryOutcome(
                "failed", attempts, attempt.error, dead_letter=not attempt.refused
            )
            state = ApprovalNotice(notice.approval_id, "failed", attempts, attempt.error)
        else:
            delay = min(self._retry_base * 2 ** (max(receives, 1) - 1), MAX_RETRY_SECONDS)
            outcome = DeliveryOutcome("retry", attempts, attempt.error, retry_in=delay)
            state = ApprovalNotice(notice.approval_id, "pending", attempts, attempt.error)
        assert self._notices is not None
        if not self._notices.record(message.job_id, state):
            get_logger().warning("approval webhook not recorded", extra={"job_id": message.job_id})
        get_logger().info(
            "approval webhook %s after %d attempt(s)",
            outcome.action,
            attempts,
            extra={"job_id": message.job_id, "last_error": attempt.error},
        )
        return outcome

    def _record(self, job_id: str, state: WebhookDelivery) -> None:
        try:
            self._repo.update(
                job_id,
                set_fields={"webhook": state.model_dump(mode="json", exclude_none=True)},
                expected_status=sorted(TERMINAL_STATUSES),
            )
        except (TransitionConflictError, JobNotFoundError):  # deleted meanwhile (TTL)
            get_logger().warning("webhook delivery not recorded", extra={"job_id": job_id})

"""The webhook Lambda function: the webhook queue (SQS, a few messages a batch) → one delivery
attempt per message.

Powertools' batch processor answers with partial batch responses. A delivered (or skipped, or
refused) message is deleted; a failed attempt is reported failed and comes back after the
backoff the deliverer chose, set on the message (its visibility timeout) rather than the
queue's long one; once its attempts have run out the job records `failed` and the message is
made visible at once, so that its next receive moves it to the dead-letter queue.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any, cast

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from pydantic import ValidationError

from ..observability import count, get_logger, instrumented
from ..wiring import Container, ContainerHolder
from .approval_notices import DynamoApprovalNotices
from .delivery import MAX_RETRY_SECONDS, WebhookDeliverer, WebhookMessage
from .webhooks import WebhookSender


class DeliveryFailedError(Exception):
    """This attempt failed; the message comes back for the next one (or the DLQ)."""


class WebhookFunction(ContainerHolder):
    derived = ("deliverer", "secrets")

    def __init__(
        self, container: Container | None = None, *, sender: WebhookSender | None = None
    ) -> None:
        super().__init__(container)
        self._sender = sender
        self._lock = threading.Lock()
        self._queue_urls: dict[str, str] = {}
        self._instrumented = instrumented(self._handle)

    @cached_property
    def secrets(self) -> SecretsProvider:
        """Powertools' provider on this container's client: its cache is this function's."""
        return SecretsProvider(boto3_client=self.container.client("secretsmanager"))

    def master_key(self) -> str:
        """The webhook master signing key, cached for SECRET_MAX_AGE_SECONDS."""
        settings = self.container.settings
        value = self.secrets.get(
            settings.webhook_secret_id, max_age=settings.secret_max_age_seconds
        )
        return cast(str, value)

    @cached_property
    def deliverer(self) -> WebhookDeliverer:
        settings = self.container.settings
        sender = self._sender or WebhookSender(allow_loopback=settings.allow_loopback_webhooks)
        return WebhookDeliverer(
            self.container.job_repository,
            sender,
            self.master_key,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            notices=DynamoApprovalNotices(self.container.client("dynamodb"), settings.jobs_table),
        )

    def _record(self, record: SQSRecord) -> None:
        try:
            message = WebhookMessage.model_validate_json(record.body)
        except ValidationError:
            get_logger().error("dropping a malformed webhook message")
            return
        receives = int(record.attributes.approximate_receive_count or 1)
        with self._lock:
            deliverer = self.deliverer  # built once, under the lock
        try:
            outcome = deliverer.deliver(message, receives)
        except Exception:  # an infrastructure fault: this attempt did not happen
            self._come_back(record, min(30 * 2 ** (receives - 1), MAX_RETRY_SECONDS))
            raise
        count(f"Webhooks_{outcome.action}")
        if outcome.action == "retry":
            self._come_back(record, outcome.retry_in or 0)
            raise DeliveryFailedError(outcome.error or "failed")
        if outcome.action == "failed" and outcome.dead_letter:
            self._come_back(record, 0)  # its next receive moves it to the dead-letter queue
            raise DeliveryFailedError(outcome.error or "failed")

    def _come_back(self, record: SQSRecord, seconds: int) -> None:
        try:
            self.container.client("sqs").change_message_visibility(
                QueueUrl=self._queue_url(record.event_source_arn),
                ReceiptHandle=record.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except Exception as exc:  # the queue's own visibility timeout still brings it back
            get_logger().warning("could not set the retry delay: %s", type(exc).__name__)

    def _queue_url(self, queue_arn: str) -> str:
        url = self.container.settings.webhook_queue_url or self._queue_urls.get(queue_arn)
        if not url:
            _, _, _, _, account, name = queue_arn.split(":", 5)
            url = self.container.client("sqs").get_queue_url(
                QueueName=name, QueueOwnerAWSAccountId=account
            )["QueueUrl"]
            self._queue_urls[queue_arn] = url
        return url

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = process_partial_response(
            event=event,
            record_handler=self._record,
            processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )
        return dict(response)

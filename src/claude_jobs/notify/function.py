"""The notifier Lambda function: the jobs table's stream → completion events and webhooks.

Powertools' batch processor reports partial failures: a record whose event could not be
published is retried (with the records after it) without replaying the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, cast

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from ..observability import instrumented
from ..wiring import Container, ContainerHolder
from .completion_events import EventBridgePublisher
from .processor import Notifier
from .webhooks import RetryPolicy, WebhookSender


class NotifierFunction(ContainerHolder):
    derived = ("notifier", "secrets")

    def __init__(
        self,
        container: Container | None = None,
        *,
        sleep: Callable[[float], None] | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__(container)
        self._sleep = sleep
        self._policy = policy
        self.processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
        self._instrumented = instrumented(self._handle)

    def master_key(self) -> str:
        """The webhook master signing key, cached for SECRET_MAX_AGE_SECONDS."""
        settings = self.container.settings
        max_age = settings.secret_max_age_seconds
        value = self.secrets.get(settings.webhook_secret_id, max_age=max_age)
        return cast(str, value)

    @cached_property
    def secrets(self) -> SecretsProvider:
        """Powertools' provider on this container's client: its cache is this function's."""
        return SecretsProvider(boto3_client=self.container.client("secretsmanager"))

    @cached_property
    def notifier(self) -> Notifier:
        container = self.container
        settings = container.settings
        sender_args: dict[str, Any] = {"allow_loopback": settings.allow_loopback_webhooks}
        if self._sleep is not None:
            sender_args["sleep"] = self._sleep
        return Notifier(
            container.job_repository,
            EventBridgePublisher(container.client("events"), settings.event_bus_name),
            WebhookSender(policy=self._policy, **sender_args),
            self.master_key,
            results_bucket=settings.results_bucket,
            documents=container.job_documents,
        )

    def _record(self, record: DynamoDBRecord) -> None:
        stream = record.dynamodb
        raw = stream.raw_event if stream is not None else {}
        self.notifier.process(raw.get("OldImage"), raw.get("NewImage"))

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = process_partial_response(
            event=event, record_handler=self._record, processor=self.processor, context=context
        )
        return dict(response)

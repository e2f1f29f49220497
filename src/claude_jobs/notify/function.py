"""The notifier Lambda function: the jobs table's stream → completion events (and
`job.awaiting_approval` events), and webhook deliveries onto the webhook queue.

Powertools' batch processor reports partial failures: a record whose event could not be
published (or whose delivery could not be queued) is retried, with the records after it,
without replaying the whole batch; the event source bisects, retries a bounded number of times
and then sends it to the notifier dead-letter queue.
"""

from __future__ import annotations

from functools import cache, cached_property
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from ..observability import get_logger, instrumented
from ..wiring import Container, ContainerHolder
from .approval_notices import DynamoApprovalNotices
from .completion_events import EventBridgePublisher
from .delivery import SqsDeliveryQueue
from .processor import GitHubComments, Notifier


class NotifierFunction(ContainerHolder):
    derived = ("notifier",)

    def __init__(self, container: Container | None = None) -> None:
        super().__init__(container)
        self.processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
        self._instrumented = instrumented(self._handle)

    @cached_property
    def notifier(self) -> Notifier:
        container = self.container
        settings = container.settings
        return Notifier(
            EventBridgePublisher(container.client("events"), settings.event_bus_name),
            SqsDeliveryQueue(container.client("sqs"), settings.webhook_queue_url),
            results_bucket=settings.results_bucket,
            documents=container.job_documents,
            notices=DynamoApprovalNotices(container.client("dynamodb"), settings.jobs_table),
            github_comments=cache(lambda: _github_comments(container)),
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


def _github_comments(container: Container) -> GitHubComments | None:
    """Built on the first job a GitHub event started (None where the GitHub client is not
    installed: the layer leaves it out unless the deployment takes GitHub events)."""
    try:
        from ..github.comments import JobComments
        from ..github.rest import GitHubRest
        from ..github.wiring import github_credentials
    except ImportError as exc:
        get_logger().warning("github comments unavailable: %s", exc)
        return None

    settings = container.settings
    return JobComments(
        github_credentials(settings, container.client("secretsmanager")),
        GitHubRest(settings.github_api_url),
    )

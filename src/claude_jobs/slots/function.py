"""The two Lambda functions that give slots back (see :mod:`claude_jobs.slots.service`).

- `lostjobs`: the jobs dead-letter queue (SQS, partial batch responses). A message whose job
  is ended or skipped is deleted; one whose job runs under a live lease comes back when the
  lease ends (its visibility set to then); an AWS fault leaves it for the next receive.
- `expiry`: the jobs table's stream, REMOVE records only (the event source's filter;
  the function checks again), with partial batch responses like the notifier's.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..observability import get_logger, instrumented
from ..wiring import Container, ContainerHolder
from .service import SlotKeeper

#: SQS's longest visibility timeout (12 h).
MAX_VISIBILITY_SECONDS = 43_200


class LookAgainLaterError(Exception):
    """The job may still be finished by its worker: the message comes back later."""


class _SlotFunction(ContainerHolder):
    derived = ("keeper",)

    @cached_property
    def keeper(self) -> SlotKeeper:
        from ..adapters.slot_releases import DynamoSlotReleases

        container = self.container
        return SlotKeeper(
            container.job_repository,
            DynamoSlotReleases(container.client("dynamodb"), container.settings.jobs_table),
        )


class LostJobsFunction(_SlotFunction):
    def __init__(self, container: Container | None = None) -> None:
        super().__init__(container)
        self.processor = BatchProcessor(
            event_type=EventType.SQS, raise_on_entire_batch_failure=False
        )
        self._queue_urls: dict[str, str] = {}
        self._instrumented = instrumented(self._handle)

    def _record(self, record: SQSRecord) -> None:
        outcome = self.keeper.lost(record.body)
        if outcome.action == "later":
            self._come_back(record, outcome.retry_in or 1.0)
            raise LookAgainLaterError(f"job {outcome.job_id} may still finish")

    def _come_back(self, record: SQSRecord, seconds: float) -> None:
        try:
            arn = record.event_source_arn
            url = self._queue_urls.get(arn)
            if url is None:
                _, _, _, _, account, name = arn.split(":", 5)
                url = self.container.client("sqs").get_queue_url(
                    QueueName=name, QueueOwnerAWSAccountId=account
                )["QueueUrl"]
                self._queue_urls[arn] = url
            self.container.client("sqs").change_message_visibility(
                QueueUrl=url,
                ReceiptHandle=record.receipt_handle,
                VisibilityTimeout=min(int(seconds) + 1, MAX_VISIBILITY_SECONDS),
            )
        except Exception as exc:  # the queue's own visibility timeout brings it back
            get_logger().warning("could not set the message's return: %s", type(exc).__name__)

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return dict(
            process_partial_response(
                event=event, record_handler=self._record, processor=self.processor, context=context
            )
        )


class ExpiredJobsFunction(_SlotFunction):
    def __init__(self, container: Container | None = None) -> None:
        super().__init__(container)
        self.processor = BatchProcessor(
            event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
        )
        self._instrumented = instrumented(self._handle)

    def _record(self, record: DynamoDBRecord) -> None:
        raw = record.raw_event
        if raw.get("eventName") != "REMOVE":
            return
        stream = record.dynamodb
        image = stream.raw_event.get("OldImage") if stream is not None else None
        self.keeper.removed(image)

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return dict(
            process_partial_response(
                event=event, record_handler=self._record, processor=self.processor, context=context
            )
        )

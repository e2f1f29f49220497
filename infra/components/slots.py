"""Slots always come back (issue 20): the two event sources that give a tenant's pending and
running slots back for jobs that ended without a worker's terminal write.

- the jobs dead-letter queue → `lostjobs` (partial batch responses): such a job ends `failed`
  with `worker_lost`;
- the jobs table's stream, REMOVE records only (a filter: other records never invoke it) →
  `expiry`: a queued or running job's item removed by TTL frees its slots. Its failures
  are described in the notifier dead-letter queue, the stream's on-failure destination.

Each function's grants (its PythonFunction's `allow`) are made by the service stack: the jobs
table's item reads and writes only; the event sources grant the reads of their own source.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_lambda_event_sources import DynamoEventSource, SqsEventSource
from constructs import Construct

from claude_jobs.resources import LOST_JOBS_BATCH_SIZE, SLOTS_STREAM
from infra.components.functions import EventSourceQueueDestination
from infra.components.nag import Ack, acknowledge


class SlotRecovery(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        lost_jobs: lambda_.Function,
        expired_jobs: lambda_.Function,
        jobs_dlq: sqs.IQueue,
        table: dynamodb.ITable,
        stream_failures: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        lost_jobs.add_event_source(
            SqsEventSource(
                jobs_dlq, batch_size=LOST_JOBS_BATCH_SIZE, report_batch_item_failures=True
            )
        )
        acknowledge(
            lost_jobs,
            Ack(
                "Serverless-LambdaEventSourceMappingDestination",
                "An on-failure destination applies to stream and Kafka sources; this SQS source "
                "is itself the jobs dead-letter queue: a message it cannot settle stays there "
                "(14 days) and is tried again.",
            ),
        )
        expired_jobs.add_event_source(
            DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=SLOTS_STREAM.batch_size,
                bisect_batch_on_error=SLOTS_STREAM.bisect_batch_on_error,
                retry_attempts=SLOTS_STREAM.retry_attempts,
                max_record_age=Duration.seconds(SLOTS_STREAM.max_record_age_seconds),
                report_batch_item_failures=True,
                on_failure=EventSourceQueueDestination(stream_failures),
                filters=[lambda_.FilterCriteria.filter(p) for p in SLOTS_STREAM.filters],
            )
        )

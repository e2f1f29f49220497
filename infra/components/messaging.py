"""The jobs queue and its dead-letter queue, from `claude_jobs.resources`."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from claude_jobs import resources
from infra.components.nag import Ack, acknowledge


def _queue(
    scope: Construct,
    spec: resources.Queue,
    prefix: str,
    dead_letter_queue: sqs.DeadLetterQueue | None = None,
) -> sqs.Queue:
    return sqs.Queue(
        scope,
        spec.logical_id,
        queue_name=spec.name(prefix),
        visibility_timeout=Duration.seconds(spec.visibility_timeout_seconds),
        retention_period=Duration.seconds(spec.retention_seconds),
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        dead_letter_queue=dead_letter_queue,
        removal_policy=RemovalPolicy.RETAIN,
    )


class JobQueues(Construct):
    """One message per job; a message received `max_receive_count` times goes to the DLQ,
    which keeps it longer than the queue would, for inspection and redrive."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.dlq = _queue(self, resources.JOBS_DLQ, prefix)
        acknowledge(
            self.dlq,
            Ack("AwsSolutions-SQS3", "This queue is the dead-letter queue of the jobs queue."),
            Ack("Serverless-SQSRedrivePolicy", "This queue is itself the dead-letter queue."),
        )
        assert resources.JOBS_QUEUE.max_receive_count is not None
        self.queue = _queue(
            self,
            resources.JOBS_QUEUE,
            prefix,
            sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=resources.JOBS_QUEUE.max_receive_count
            ),
        )

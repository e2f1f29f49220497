"""The queues and their dead-letter queues, from `claude_jobs.resources`: jobs, webhook
deliveries, and the dead-letter queues of the triggers and the notifier."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
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
        # Trigger events that cannot become jobs, with their reason, and failed asynchronous
        # invocations of the trigger function.
        self.trigger_dlq = _queue(self, resources.TRIGGER_DLQ, prefix)
        # EventBridge rules of this deployment (their names start with the prefix, on the
        # default bus or on the deployment's bus) may dead-letter undeliverable events here.
        # Granted by name, so the rules' stack can be deployed after this one.
        self.trigger_dlq.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.trigger_dlq.queue_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": Stack.of(self).format_arn(
                            service="events", resource="rule", resource_name=f"{prefix}-*"
                        )
                    }
                },
            )
        )
        # Jobs-table stream batches the notifier could not process after its retries.
        self.notifier_dlq = _queue(self, resources.NOTIFIER_DLQ, prefix)
        # Webhook deliveries (one message each), and those whose attempts ran out.
        self.webhook_dlq = _queue(self, resources.WEBHOOK_DLQ, prefix)
        acknowledge(
            self.webhook_dlq,
            Ack("AwsSolutions-SQS3", "This queue is the dead-letter queue of the webhook queue."),
            Ack("Serverless-SQSRedrivePolicy", "This queue is itself the dead-letter queue."),
        )
        assert resources.WEBHOOK_QUEUE.max_receive_count is not None
        self.webhook_queue = _queue(
            self,
            resources.WEBHOOK_QUEUE,
            prefix,
            sqs.DeadLetterQueue(
                queue=self.webhook_dlq, max_receive_count=resources.WEBHOOK_QUEUE.max_receive_count
            ),
        )
        for dlq in (self.trigger_dlq, self.notifier_dlq):
            acknowledge(
                dlq,
                Ack("AwsSolutions-SQS3", "A dead-letter queue: nothing is redriven from it."),
                Ack(
                    "Serverless-SQSRedrivePolicy",
                    "A dead-letter queue itself: it has nowhere further to redrive.",
                ),
            )

"""Service stack: the API, the functions and their permissions, events, and monitoring.

Each function is granted exactly the actions its code calls, on exactly its resources:
- submit: the job repository's create/claim/cancel/dispatch-failure writes, the jobs queue;
- status: reads of jobs and the tenant index, results objects (to presign download URLs);
- authorizer: key lookups;
- worker: job reads and transitions, results writes, S3 inputs, the Anthropic key;
- trigger: the submit path, S3 inputs, the trigger dead-letter queue;
- notifier: the event bus, the webhook queue (it reads jobs from the stream's images);
- webhook: job reads and webhook outcome writes, the webhook signing key, its queue.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from constructs import Construct

from claude_jobs import resources
from infra.components.api import JobsApi
from infra.components.events import (
    JobEvents,
    StreamNotifier,
    WebhookDeliveries,
    acknowledge_notifications_handler,
    load_triggers,
)
from infra.components.functions import (
    INBOX_OBJECTS,
    RESULTS_OBJECTS,
    RESULTS_OBJECTS_REASON,
    PythonFunction,
    SharedLayer,
    WorkerFunction,
)
from infra.components.monitoring import Monitoring
from infra.components.nag import Ack, acknowledge
from infra.config import InfraConfig
from infra.stacks.stateful import StatefulStack

METRICS_NAMESPACE = "ClaudeJobs"

#: The job repository's writes on the submit path (create with an idempotency claim, the
#: dispatch-failure transaction that releases the claim, cancel) and its reads.
SUBMIT_TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
]
INBOX_OBJECTS_REASON = (
    "Objects of the inbox bucket: inputs of S3-triggered jobs, keys not known in advance."
)


class ServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        stateful: StatefulStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        jobs = stateful.data.jobs_table
        keys = stateful.data.keys_table
        bucket = stateful.data.results_bucket
        inbox = stateful.data.inbox_bucket
        queue = stateful.queues.queue
        trigger_dlq = stateful.queues.trigger_dlq

        service_name = config.app_name
        common = {
            "POWERTOOLS_SERVICE_NAME": service_name,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
        }
        job_policy = {
            "PERMITTED_TOOLS": ",".join(config.permitted_tools),
            "DEFAULT_MODEL": config.default_model,
            "MAX_BUDGET_USD_CAP": str(config.max_budget_usd_cap),
            "JOB_RETENTION_DAYS": str(config.job_retention_days),
        }
        layer = SharedLayer(self, "SharedLayer").layer
        results_objects = bucket.arn_for_objects(f"{resources.RESULTS_PREFIX}*")
        inbox_objects = inbox.arn_for_objects("*")
        tenant_index = f"{jobs.table_arn}/index/{resources.JOBS_TABLE.indexes[0].name}"
        retention = config.log_retention_days

        # ---------------------------------------------------------------- API functions
        self.submit = PythonFunction(
            self,
            "Submit",
            name="submit",
            description="POST /v1/jobs and POST /v1/jobs/{job_id}/cancel",
            layer=layer,
            environment={
                **common,
                **job_policy,
                "JOBS_TABLE": jobs.table_name,
                "JOBS_QUEUE_URL": queue.queue_url,
            },
            log_retention_days=retention,
            timeout=Duration.seconds(15),
        )
        self.submit.allow(SUBMIT_TABLE_ACTIONS, [jobs.table_arn])
        self.submit.allow(["sqs:SendMessage"], [queue.queue_arn])

        self.status = PythonFunction(
            self,
            "Status",
            name="status",
            description="GET /v1/jobs, GET /v1/jobs/{job_id} and GET /v1/health",
            layer=layer,
            environment={
                **common,
                "JOBS_TABLE": jobs.table_name,
                "RESULTS_BUCKET": bucket.bucket_name,
            },
            log_retention_days=retention,
            # Long polls wait up to 20 s; API Gateway gives up at 29 s.
            timeout=Duration.seconds(28),
        )
        self.status.allow(["dynamodb:GetItem"], [jobs.table_arn])
        self.status.allow(["dynamodb:Query"], [tenant_index])
        # Presigned download URLs are signed with this role: it must be able to read them.
        self.status.allow(["s3:GetObject"], [results_objects])
        acknowledge(
            self.status.role, Ack("AwsSolutions-IAM5", RESULTS_OBJECTS_REASON, [RESULTS_OBJECTS])
        )

        self.authorizer = PythonFunction(
            self,
            "Authorizer",
            name="authorizer",
            description="TOKEN authorizer: API key -> tenant",
            layer=layer,
            environment={**common, "KEYS_TABLE": keys.table_name},
            log_retention_days=retention,
            timeout=Duration.seconds(5),
        )
        self.authorizer.allow(["dynamodb:GetItem"], [keys.table_arn])

        self.api = JobsApi(
            self,
            "Api",
            config=config,
            submit=self.submit.function,
            status=self.status.function,
            authorizer=self.authorizer.function,
        )

        # ---------------------------------------------------------------- worker
        self.worker = WorkerFunction(
            self,
            "Worker",
            environment={
                **common,
                **job_policy,
                "JOBS_TABLE": jobs.table_name,
                "RESULTS_BUCKET": bucket.bucket_name,
                "ANTHROPIC_SECRET_ID": stateful.anthropic_key.secret_id,
                "ANTHROPIC_BASE_URL": config.anthropic_base_url,
            },
            log_retention_days=retention,
            memory_mb=config.worker_memory_mb,
            ephemeral_storage_mb=config.worker_ephemeral_storage_mb,
            timeout=Duration.seconds(resources.WORKER_TIMEOUT_SECONDS),
            reserved_concurrency=config.worker_reserved_concurrency,
            queue=queue,
            max_concurrency=config.worker_max_concurrency,
        )
        self.worker.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [jobs.table_arn])
        self.worker.allow(["s3:PutObject"], [results_objects])
        # Inputs of S3-triggered jobs, by exact version.
        self.worker.allow(["s3:GetObject", "s3:GetObjectVersion"], [inbox_objects])
        self.worker.allow(["secretsmanager:GetSecretValue"], [stateful.anthropic_key.policy_arn])
        acknowledge(
            self.worker.role,
            Ack("AwsSolutions-IAM5", RESULTS_OBJECTS_REASON, [RESULTS_OBJECTS]),
            Ack("AwsSolutions-IAM5", INBOX_OBJECTS_REASON, [INBOX_OBJECTS]),
        )

        # ---------------------------------------------------------------- triggers, events
        self.trigger = PythonFunction(
            self,
            "Trigger",
            name="trigger",
            description="S3 objects and EventBridge events -> jobs",
            layer=layer,
            environment={
                **common,
                **job_policy,
                "JOBS_TABLE": jobs.table_name,
                "JOBS_QUEUE_URL": queue.queue_url,
                "INBOX_BUCKET": inbox.bucket_name,
                "TRIGGER_DLQ_URL": trigger_dlq.queue_url,
            },
            log_retention_days=retention,
            timeout=Duration.seconds(60),
            # Invoked asynchronously (S3, EventBridge): what still fails after Lambda's
            # retries lands next to the events the function itself rejected.
            failure_queue=trigger_dlq,
        )
        self.trigger.allow(SUBMIT_TABLE_ACTIONS, [jobs.table_arn])
        self.trigger.allow(["sqs:SendMessage"], [queue.queue_arn, trigger_dlq.queue_arn])
        self.trigger.allow(["s3:GetObject", "s3:GetObjectVersion"], [inbox_objects])
        acknowledge(
            self.trigger.role, Ack("AwsSolutions-IAM5", INBOX_OBJECTS_REASON, [INBOX_OBJECTS])
        )

        self.events = JobEvents(
            self,
            "Events",
            prefix=config.prefix,
            triggers=load_triggers(),
            trigger_function=self.trigger.function,
            inbox_bucket_name=inbox.bucket_name,
            dead_letter_queue=trigger_dlq,
        )

        webhook_queue = stateful.queues.webhook_queue
        self.notifier = PythonFunction(
            self,
            "Notifier",
            name="notifier",
            description="Jobs table stream -> completion events and webhook deliveries",
            layer=layer,
            environment={
                **common,
                "RESULTS_BUCKET": bucket.bucket_name,
                "EVENT_BUS_NAME": self.events.bus.event_bus_name,
                "WEBHOOK_QUEUE_URL": webhook_queue.queue_url,
            },
            log_retention_days=retention,
            # A batch of up to 10 records, each an event and at most one queued delivery.
            timeout=Duration.seconds(60),
            no_dlq_reason=(
                "Invoked by the stream event source only: failed batches are described in the "
                "notifier dead-letter queue, the event source's on-failure destination."
            ),
        )
        self.notifier.allow(["events:PutEvents"], [self.events.bus.event_bus_arn])
        self.notifier.allow(["sqs:SendMessage"], [webhook_queue.queue_arn])
        StreamNotifier(
            self,
            "StreamNotifier",
            notifier=self.notifier.function,
            table=jobs,
            dead_letter_queue=stateful.queues.notifier_dlq,
        )

        self.webhook = PythonFunction(
            self,
            "Webhook",
            name="webhook",
            description="Webhook queue -> signed deliveries, one attempt per message",
            layer=layer,
            environment={
                **common,
                "JOBS_TABLE": jobs.table_name,
                "WEBHOOK_SECRET_ID": stateful.webhook_key.secret.secret_arn,
                "WEBHOOK_QUEUE_URL": webhook_queue.queue_url,
            },
            log_retention_days=retention,
            # A batch of a few deliveries, each with its total deadline.
            timeout=Duration.seconds(resources.WEBHOOK_TIMEOUT_SECONDS),
            no_dlq_reason=(
                "Invoked by the SQS event source only: deliveries whose attempts ran out go to "
                "the webhook queue's dead-letter queue."
            ),
        )
        self.webhook.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [jobs.table_arn])
        self.webhook.allow(
            ["secretsmanager:GetSecretValue"], [stateful.webhook_key.secret.secret_arn]
        )
        WebhookDeliveries(
            self, "WebhookDeliveries", function=self.webhook.function, queue=webhook_queue
        )

        acknowledge_notifications_handler(self)

        # ---------------------------------------------------------------- operations
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            api=self.api.api,
            worker=self.worker.function,
            api_functions={
                "submit": self.submit.function,
                "status": self.status.function,
                "authorizer": self.authorizer.function,
                "trigger": self.trigger.function,
                "notifier": self.notifier.function,
                "webhook": self.webhook.function,
            },
            queue=queue,
            dlq=stateful.queues.dlq,
            side_dlqs={
                "Trigger": trigger_dlq,
                "Notifier": stateful.queues.notifier_dlq,
                "Webhook": stateful.queues.webhook_dlq,
            },
            metrics_namespace=METRICS_NAMESPACE,
            service_name=service_name,
        )

        CfnOutput(self, "ApiUrl", value=self.api.api.url)
        CfnOutput(self, "EventBusName", value=self.events.bus.event_bus_name)
        CfnOutput(self, "InboxBucketName", value=inbox.bucket_name)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)

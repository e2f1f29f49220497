"""Service stack: the API, the functions and their permissions, and monitoring.

Each function is granted exactly the actions its code calls, on exactly its resources.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from constructs import Construct

from claude_jobs import resources
from infra.components.api import JobsApi
from infra.components.functions import (
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
        queue = stateful.queues.queue

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
        tenant_index = f"{jobs.table_arn}/index/{resources.JOBS_TABLE.indexes[0].name}"

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
            log_retention_days=config.log_retention_days,
            timeout=Duration.seconds(15),
        )
        self.submit.allow(
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ],
            [jobs.table_arn],
        )
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
            log_retention_days=config.log_retention_days,
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
            log_retention_days=config.log_retention_days,
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
            log_retention_days=config.log_retention_days,
            memory_mb=config.worker_memory_mb,
            ephemeral_storage_mb=config.worker_ephemeral_storage_mb,
            timeout=Duration.seconds(resources.WORKER_TIMEOUT_SECONDS),
            reserved_concurrency=config.worker_reserved_concurrency,
            queue=queue,
            max_concurrency=config.worker_max_concurrency,
        )
        self.worker.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [jobs.table_arn])
        self.worker.allow(["s3:PutObject", "s3:GetObject"], [results_objects])
        acknowledge(
            self.worker.role, Ack("AwsSolutions-IAM5", RESULTS_OBJECTS_REASON, [RESULTS_OBJECTS])
        )
        self.worker.allow(["secretsmanager:GetSecretValue"], [stateful.anthropic_key.policy_arn])

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
            },
            queue=queue,
            dlq=stateful.queues.dlq,
            metrics_namespace=METRICS_NAMESPACE,
            service_name=service_name,
        )

        CfnOutput(self, "ApiUrl", value=self.api.api.url)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)

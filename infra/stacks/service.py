"""Service stack: the API, the functions and their permissions, events, and monitoring.

The functions and the API's routes are the definition table's (`claude_jobs.definitions`);
this stack gives each function this deployment's values and its permissions.

Each function is granted exactly the actions its code calls, on exactly its resources:
- submit: the job repository's create/claim/cancel/dispatch-failure writes, the jobs queue;
- status: reads of jobs and the tenant index, results objects (to presign download URLs), the
  page token key;
- authorizer: key lookups;
- worker: job reads and transitions, results writes, S3 inputs, and the Anthropic key — or,
  with `model_provider=bedrock`, model invocation of the configured inference profiles;
- trigger: the submit path, S3 inputs, the trigger dead-letter queue;
- notifier: the event bus, the webhook queue (it reads jobs from the stream's images);
- webhook: job reads and webhook outcome writes, the webhook signing key, its queue;
- reconciler: a scan and bookkeeping updates of the jobs table, the jobs queue.
- lost_jobs: job reads and the counted `worker_lost` transition, its queue (the jobs DLQ);
- expired_jobs: the release marker and the tenant counter's write (the stream's images).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import RegexAppliesTo
from constructs import Construct

from claude_jobs import resources
from claude_jobs.definitions import FUNCTIONS
from claude_jobs.settings import format_model_map
from infra.components.api import JobsApi
from infra.components.bedrock import BedrockModels
from infra.components.events import (
    JobEvents,
    StreamNotifier,
    WebhookDeliveries,
    acknowledge_notifications_handler,
    load_triggers,
)
from infra.components.functions import (
    DOCUMENTS_OBJECTS,
    DOCUMENTS_OBJECTS_REASON,
    INBOX_OBJECTS,
    RESULTS_OBJECTS,
    RESULTS_OBJECTS_REASON,
    UPLOADS_OBJECTS,
    UPLOADS_OBJECTS_REASON,
    PythonFunction,
    SharedLayer,
    WorkerFunction,
)
from infra.components.monitoring import Monitoring
from infra.components.nag import Ack, acknowledge
from infra.components.reconciler import Reconciler
from infra.components.slots import SlotRecovery
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
GITHUB_SECRETS = RegexAppliesTo(
    regex=r"/^Resource::arn:.*:secretsmanager:.*:secret:.*\/github\/\*$/"
)
GITHUB_INSTALLATIONS = RegexAppliesTo(
    regex=r"/^Resource::arn:.*:secretsmanager:.*:secret:.*\/github-installations\/\*$/"
)
GITHUB_INSTALLATIONS_REASON = (
    "GitHub events: which tenant an App installation belongs to, one secret per installation "
    "under <prefix>/github-installations/, installations not known at deploy time; only the "
    "submit function (which answers the App's webhook) reads them."
)
GITHUB_SECRETS_REASON = (
    "Tenants' GitHub credentials: one secret per tenant under <prefix>/github/, tenants not "
    "known at deploy time; only the worker reads them, and only that prefix."
)
INBOX_OBJECTS_REASON = (
    "Objects of the inbox bucket: inputs of S3-triggered jobs, keys not known in advance."
)

#: MCP servers: the tenants' vault entries, secrets named `<app>-<stage>/vault/<tenant>/<name>`.
VAULT_SECRETS = RegexAppliesTo(regex=r"/^Resource::arn:.*:secretsmanager:.*\/vault\/\*$/")
VAULT_SECRETS_REASON = (
    "The tenants' vault entries (MCP servers' credentials), secrets under "
    "<app>-<stage>/vault/ only: tenants and entry names are not known at deploy time, so the "
    "name prefix is the narrowest resource. The worker reads the entries of a job's own tenant."
)

#: Session transcripts under the sessions/ prefix of the results bucket.
SESSIONS_OBJECTS = RegexAppliesTo(regex=r"/^Resource::.*ResultsBucket[^/]*\/sessions\/\*$/")
SESSIONS_OBJECTS_REASON = (
    "Session transcripts under the sessions/ prefix of the results bucket only "
    "(sessions/<tenant>/<session>/...): tenants and sessions are not known in advance, so the "
    "prefix is the narrowest resource."
)


def _allow_listing(role: iam.IRole, bucket_arn: str) -> None:
    """ListBucket on the results bucket, for keys under sessions/ only (a session's parts)."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{resources.SESSIONS_PREFIX}*"]}},
        )
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
        events = stateful.data.events_table
        bucket = stateful.data.results_bucket
        inbox = stateful.data.inbox_bucket
        queue = stateful.queues.queue
        trigger_dlq = stateful.queues.trigger_dlq

        service_name = config.app_name
        #: This deployment's value of every variable a function may read; each function gets
        #: those its entry in the definition table names.
        values = {
            "POWERTOOLS_SERVICE_NAME": service_name,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
            "PERMITTED_TOOLS": ",".join(config.permitted_tools),
            "DEFAULT_MODEL": config.default_model,
            "MAX_BUDGET_USD_CAP": str(config.max_budget_usd_cap),
            "JOB_RETENTION_DAYS": str(config.job_retention_days),
            "SESSION_RETENTION_DAYS": str(config.session_retention_days),
            "MAX_JOB_SECONDS": str(config.max_job_seconds),
            "JOBS_TABLE": jobs.table_name,
            "KEYS_TABLE": keys.table_name,
            "EVENTS_TABLE": events.table_name,
            "JOBS_QUEUE_URL": queue.queue_url,
            "RESULTS_BUCKET": bucket.bucket_name,
            "INBOX_BUCKET": inbox.bucket_name,
            "TRIGGER_DLQ_URL": trigger_dlq.queue_url,
            **_provider_environment(config, stateful),
            "WEBHOOK_SECRET_ID": stateful.webhook_key.secret.secret_arn,
            "PAGE_TOKEN_SECRET_ID": stateful.page_token_key.secret.secret_arn,
            "TENANT_MAX_PENDING": str(config.tenant_max_pending),
            "TENANT_MAX_RUNNING": str(config.tenant_max_running),
            "TENANT_DEFER_SECONDS": str(config.tenant_defer_seconds),
            "UPLOAD_MAX_BYTES": str(config.upload_max_bytes),
            "INPUTS_MAX_BYTES": str(config.inputs_max_bytes),
            "ARTIFACTS_MAX_COUNT": str(config.artifacts_max_count),
            "ARTIFACTS_MAX_BYTES": str(config.artifacts_max_bytes),
            "WARM_START": "true" if config.warm_start else "false",
            "MCP_ALLOWED_URLS": ",".join(config.mcp_allowed_urls),
            "VAULT_SECRET_PREFIX": config.vault_prefix,
            "GITHUB_GIT_URL": config.github_git_url,
            "GITHUB_API_URL": config.github_api_url,
            "GITHUB_SECRET_PREFIX": config.github_secret_prefix,
            "GITHUB_INSTALLATION_PREFIX": config.github_installation_prefix,
        }
        if config.github_app_id:
            values["GITHUB_APP_ID"] = config.github_app_id
            values["GITHUB_APP_KEY_SECRET_ID"] = config.github_app_key_secret_name or (
                f"{config.prefix}/github-app-key"
            )
        if stateful.github_webhook_key is not None:
            # GitHub events (issue 24): the submit function answers the App's webhook.
            values["GITHUB_WEBHOOK_SECRET_ID"] = stateful.github_webhook_key.secret.secret_arn
            values["GITHUB_HANDLE"] = config.github_handle
            values["GITHUB_LABEL"] = config.github_label
            values["GITHUB_ALLOWED_TOOLS"] = ",".join(config.github_allowed_tools)
        layer = SharedLayer(self, "SharedLayer").layer
        results_objects = bucket.arn_for_objects(f"{resources.RESULTS_PREFIX}*")
        documents = bucket.arn_for_objects(f"{resources.DOCUMENTS_PREFIX}*")
        documents_ack = Ack("AwsSolutions-IAM5", DOCUMENTS_OBJECTS_REASON, [DOCUMENTS_OBJECTS])
        sessions = bucket.arn_for_objects(f"{resources.SESSIONS_PREFIX}*")
        sessions_ack = Ack("AwsSolutions-IAM5", SESSIONS_OBJECTS_REASON, [SESSIONS_OBJECTS])
        # Files: uploads under uploads/<tenant>/<upload_id>/ (ids made at request time).
        uploads = bucket.arn_for_objects(f"{resources.UPLOADS_PREFIX}*")
        uploads_ack = Ack("AwsSolutions-IAM5", UPLOADS_OBJECTS_REASON, [UPLOADS_OBJECTS])
        inbox_objects = inbox.arn_for_objects("*")
        tenant_index = (
            f"{jobs.table_arn}/index/{resources.JOBS_TABLE.index('by_tenant_shard').name}"
        )
        approval_index = f"{jobs.table_arn}/index/{resources.JOBS_TABLE.index('by_approval').name}"
        retention = config.log_retention_days

        # ---------------------------------------------------------------- API functions
        self.submit = PythonFunction(
            self,
            "Submit",
            definition=FUNCTIONS["submit"],
            values=values,
            layer=layer,
            log_retention_days=retention,
        )
        self.submit.allow(SUBMIT_TABLE_ACTIONS, [jobs.table_arn])
        self.submit.allow(["sqs:SendMessage"], [queue.queue_arn])
        # Large prompts and schemas; a cancelled job's prompts are deleted.
        self.submit.allow(["s3:PutObject", "s3:DeleteObject"], [documents])
        # DELETE /v1/sessions/{id}: the session's transcript objects.
        self.submit.allow(["s3:DeleteObject"], [sessions])
        _allow_listing(self.submit.role, bucket.bucket_arn)
        # Files: writes an upload's record and signs its PUT (a presigned URL acts with this
        # role: PutObject on uploads/ only); reads records and heads contents at job submit.
        self.submit.allow(["s3:PutObject", "s3:GetObject"], [uploads])
        acknowledge(self.submit.role, documents_ack, sessions_ack, uploads_ack)

        self.status = PythonFunction(
            self,
            "Status",
            definition=FUNCTIONS["status"],
            values=values,
            layer=layer,
            log_retention_days=retention,
        )
        # A list page reads the index's keys, then the small job items by key.
        self.status.allow(["dynamodb:GetItem", "dynamodb:BatchGetItem"], [jobs.table_arn])
        self.status.allow(["dynamodb:Query"], [tenant_index])
        # GET /v1/approvals: the sparse index of the tenant's jobs awaiting a decision.
        self.status.allow(["dynamodb:Query"], [approval_index])
        # Progress events: a Query of one job's batches.
        self.status.allow(["dynamodb:Query"], [events.table_arn])
        # Presigned download URLs are signed with this role: it must be able to read them.
        self.status.allow(["s3:GetObject"], [results_objects, documents])
        # The generated key of list page tokens (read once per execution environment).
        self.status.allow(
            ["secretsmanager:GetSecretValue"], [stateful.page_token_key.secret.secret_arn]
        )
        acknowledge(
            self.status.role,
            Ack("AwsSolutions-IAM5", RESULTS_OBJECTS_REASON, [RESULTS_OBJECTS]),
            documents_ack,
        )

        self.authorizer = PythonFunction(
            self,
            "Authorizer",
            definition=FUNCTIONS["authorizer"],
            values=values,
            layer=layer,
            log_retention_days=retention,
        )
        self.authorizer.allow(["dynamodb:GetItem"], [keys.table_arn])

        self.api = JobsApi(
            self,
            "Api",
            config=config,
            functions={"submit": self.submit.function, "status": self.status.function},
            authorizer=self.authorizer.function,
        )

        # ---------------------------------------------------------------- worker
        self.worker = WorkerFunction(
            self,
            "Worker",
            definition=FUNCTIONS["worker"],
            values=values,
            log_retention_days=retention,
            memory_mb=config.worker_memory_mb,
            ephemeral_storage_mb=config.worker_ephemeral_storage_mb,
            reserved_concurrency=config.worker_reserved_concurrency,
            queue=queue,
            max_concurrency=config.worker_max_concurrency,
        )
        self.worker.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [jobs.table_arn])
        # Progress events: a conditional PutItem per batch; the last seq (Query) on a retry.
        self.worker.allow(
            ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"], [events.table_arn]
        )
        # A job of a tenant at its running share is offered again as a new, delayed message.
        self.worker.allow(["sqs:SendMessage"], [queue.queue_arn])
        self.worker.allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], [documents])
        # Session transcripts: the worker's SessionStore loads a job's session and saves it.
        self.worker.allow(["s3:GetObject", "s3:PutObject"], [sessions])
        _allow_listing(self.worker.role, bucket.bucket_arn)
        # Inputs of S3-triggered jobs, by exact version.
        self.worker.allow(["s3:GetObject", "s3:GetObjectVersion"], [inbox_objects])
        # Files: a job's uploads (read only; its artifacts go with its documents above).
        self.worker.allow(["s3:GetObject"], [uploads])
        if stateful.anthropic_key is not None:
            self.worker.allow(
                ["secretsmanager:GetSecretValue"], [stateful.anthropic_key.policy_arn]
            )
        else:  # Bedrock: invoke the configured models, nothing else
            BedrockModels(
                self, "BedrockModels", models=config.bedrock_models, regions=config.bedrock_regions
            ).grant_invoke(self.worker.role)
        # MCP servers: the tenants' vault entries (read for a job's own tenant), nothing else.
        vault_secrets = Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{config.vault_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.worker.allow(["secretsmanager:GetSecretValue"], [vault_secrets])
        # Repositories: tenants' GitHub credentials, by name prefix only (and the App's key).
        github_secrets = [
            self.format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name=f"{config.github_secret_prefix}*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
        ]
        if config.github_app_id:
            github_secrets.append(
                self.format_arn(
                    service="secretsmanager",
                    resource="secret",
                    resource_name=f"{values['GITHUB_APP_KEY_SECRET_ID']}-??????",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            )
        self.worker.allow(["secretsmanager:GetSecretValue"], github_secrets)
        if stateful.github_webhook_key is not None:
            # GitHub events: the webhook's secret; the installation's tenant and its credential
            # (the App's key) for the permission check and the job's comment, which the
            # notifier updates when the job ends.
            installations = self.format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name=f"{config.github_installation_prefix}*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            self.submit.allow(
                ["secretsmanager:GetSecretValue"],
                [stateful.github_webhook_key.secret.secret_arn, installations, *github_secrets],
            )
            self.notifier_github_secrets = github_secrets
            acknowledge(
                self.submit.role,
                Ack("AwsSolutions-IAM5", GITHUB_SECRETS_REASON, [GITHUB_SECRETS]),
                Ack("AwsSolutions-IAM5", GITHUB_INSTALLATIONS_REASON, [GITHUB_INSTALLATIONS]),
            )
        else:
            self.notifier_github_secrets = []
        acknowledge(
            self.worker.role,
            Ack("AwsSolutions-IAM5", GITHUB_SECRETS_REASON, [GITHUB_SECRETS]),
            documents_ack,
            sessions_ack,
            uploads_ack,
            Ack("AwsSolutions-IAM5", INBOX_OBJECTS_REASON, [INBOX_OBJECTS]),
            Ack("AwsSolutions-IAM5", VAULT_SECRETS_REASON, [VAULT_SECRETS]),
        )

        # ---------------------------------------------------------------- triggers, events
        self.trigger = PythonFunction(
            self,
            "Trigger",
            definition=FUNCTIONS["trigger"],
            values=values,
            layer=layer,
            log_retention_days=retention,
            # Invoked asynchronously (S3, EventBridge): what still fails after Lambda's
            # retries lands next to the events the function itself rejected.
            failure_queue=trigger_dlq,
        )
        self.trigger.allow(SUBMIT_TABLE_ACTIONS, [jobs.table_arn])
        self.trigger.allow(["sqs:SendMessage"], [queue.queue_arn, trigger_dlq.queue_arn])
        self.trigger.allow(["s3:GetObject", "s3:GetObjectVersion"], [inbox_objects])
        self.trigger.allow(["s3:PutObject", "s3:DeleteObject"], [documents])
        acknowledge(
            self.trigger.role,
            Ack("AwsSolutions-IAM5", INBOX_OBJECTS_REASON, [INBOX_OBJECTS]),
            documents_ack,
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
        values["EVENT_BUS_NAME"] = self.events.bus.event_bus_name
        values["WEBHOOK_QUEUE_URL"] = webhook_queue.queue_url
        self.notifier = PythonFunction(
            self,
            "Notifier",
            definition=FUNCTIONS["notifier"],
            values=values,
            layer=layer,
            log_retention_days=retention,
            no_dlq_reason=(
                "Invoked by the stream event source only: failed batches are described in the "
                "notifier dead-letter queue, the event source's on-failure destination."
            ),
        )
        self.notifier.allow(["events:PutEvents"], [self.events.bus.event_bus_arn])
        # Small results kept in the bucket ride in the completion event.
        self.notifier.allow(["s3:GetObject"], [documents])
        acknowledge(self.notifier.role, documents_ack)
        self.notifier.allow(["sqs:SendMessage"], [webhook_queue.queue_arn])
        if self.notifier_github_secrets:
            self.notifier.allow(["secretsmanager:GetSecretValue"], self.notifier_github_secrets)
            acknowledge(
                self.notifier.role,
                Ack("AwsSolutions-IAM5", GITHUB_SECRETS_REASON, [GITHUB_SECRETS]),
            )
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
            definition=FUNCTIONS["webhook"],
            values=values,
            layer=layer,
            log_retention_days=retention,
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

        # ---------------------------------------------------------------- slots come back
        self.lost_jobs = PythonFunction(
            self,
            "Lostjobs",
            definition=FUNCTIONS["lostjobs"],
            values=values,
            layer=layer,
            log_retention_days=retention,
            no_dlq_reason=(
                "Invoked by the SQS event source of the jobs dead-letter queue only: a message "
                "it cannot settle stays in that queue (retention 14 days) and is tried again."
            ),
        )
        # The counted transition: a read, then one transaction of two updates (the job, the
        # tenant's counter).
        self.lost_jobs.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [jobs.table_arn])
        self.expired_jobs = PythonFunction(
            self,
            "Expiry",
            definition=FUNCTIONS["expiry"],
            values=values,
            layer=layer,
            log_retention_days=retention,
            no_dlq_reason=(
                "Invoked by the stream event source only: failed batches are described in the "
                "notifier dead-letter queue, the event source's on-failure destination."
            ),
        )
        # One transaction: the release marker (a conditional put) and the counter's update.
        self.expired_jobs.allow(["dynamodb:PutItem", "dynamodb:UpdateItem"], [jobs.table_arn])
        SlotRecovery(
            self,
            "SlotRecovery",
            lost_jobs=self.lost_jobs.function,
            expired_jobs=self.expired_jobs.function,
            jobs_dlq=stateful.queues.dlq,
            table=jobs,
            stream_failures=stateful.queues.notifier_dlq,
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
                "lostjobs": self.lost_jobs.function,
                "expiry": self.expired_jobs.function,
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

        values["RECONCILE_GRACE_SECONDS"] = str(config.reconcile_grace_seconds)
        self.reconciler = Reconciler(
            self,
            "Reconciler",
            values=values,
            layer=layer,
            log_retention_days=retention,
            table=jobs,
            queue=queue,
            documents=documents,
            topic=self.monitoring.topic,
            metrics_namespace=METRICS_NAMESPACE,
            service_name=service_name,
        )

        CfnOutput(self, "ApiUrl", value=self.api.api.url)
        CfnOutput(self, "EventBusName", value=self.events.bus.event_bus_name)
        CfnOutput(self, "InboxBucketName", value=inbox.bucket_name)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)


def _provider_environment(config: InfraConfig, stateful: StatefulStack) -> dict[str, str]:
    """The worker's model provider settings: the key's secret, or Bedrock's models."""
    if stateful.anthropic_key is None:
        return {
            "MODEL_PROVIDER": "bedrock",
            "BEDROCK_MODELS": format_model_map(config.bedrock_models),
        }
    return {
        "ANTHROPIC_SECRET_ID": stateful.anthropic_key.secret_id,
        "ANTHROPIC_BASE_URL": config.anthropic_base_url,
    }

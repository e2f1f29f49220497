"""Lambda building blocks: the shared layer, zip functions on it, and the worker image.

Every function gets its own role with no managed policy: it may write to its own log group,
send traces to X-Ray, and do exactly what its construct grants it, nothing else.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import jsii
from aws_cdk import (
    AssetHashType,
    CfnResource,
    Duration,
    IStableListProducer,
    Lazy,
    RemovalPolicy,
    Size,
    Stack,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_ecr_assets import Platform
from aws_cdk.aws_lambda_event_sources import SqsEventSource
from cdk_nag import RegexAppliesTo
from constructs import Construct

from claude_jobs.definitions import Function
from infra.bundling import layer_bundling
from infra.components.nag import Ack, acknowledge
from infra.config import LOG_RETENTION_DAYS
from infra.packaging import (
    FUNCTION_EXCLUDE,
    FUNCTIONS_DIR,
    LAYER_SOURCE,
    REPO_ROOT,
    layer_hash,
)

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the latest Lambda Python runtime; wheels match it
ARCHITECTURE = lambda_.Architecture.ARM_64
WORKER_DOCKERFILE = "functions/worker/Dockerfile"


def worker_context_exclude(dockerfile: Path = REPO_ROOT / WORKER_DOCKERFILE) -> list[str]:
    """The worker image's build context (the repository root) narrowed to what its Dockerfile
    copies (Docker ignore syntax): everything else is excluded from the staged asset."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        parts = shlex.split(line.strip()) if line.strip().upper().startswith("COPY ") else []
        args = [a for a in parts[1:] if not a.startswith("--")]
        if parts and not any(a.startswith("--from") for a in parts):
            sources.extend(a.rstrip("/") for a in args[:-1])
    keep = [WORKER_DOCKERFILE, *sources]  # the Dockerfile itself: the build reads it there
    return ["*", *(f"!{path}" for path in keep), "**/__pycache__", "**/*.pyc"]


_XRAY = Ack(
    "AwsSolutions-IAM5",
    "Actions that support no resource-level permissions, granted on '*': X-Ray's "
    "PutTraceSegments and PutTelemetryRecords (active tracing) and, for the jobs-table stream "
    "consumer, dynamodb:ListStreams.",
    applies_to=["Resource::*"],
)


#: The results prefix of the results bucket, in whatever form the bucket's ARN takes.
RESULTS_OBJECTS = RegexAppliesTo(regex=r"/^Resource::.*ResultsBucket[^/]*\/results\/\*$/")
DOCUMENTS_OBJECTS = RegexAppliesTo(regex=r"/^Resource::.*ResultsBucket[^/]*\/tenant\/\*$/")
INBOX_OBJECTS = RegexAppliesTo(regex=r"/^Resource::.*InboxBucket[^/]*\/\*$/")
RESULTS_OBJECTS_REASON = (
    "Objects under the results/ prefix of the results bucket only: job ids are not known in "
    "advance, so the object ARN ends in a wildcard."
)
UPLOADS_OBJECTS = RegexAppliesTo(regex=r"/^Resource::.*ResultsBucket[^/]*\/uploads\/\*$/")
UPLOADS_OBJECTS_REASON = (
    "Uploads under the uploads/ prefix of the results bucket only "
    "(uploads/<tenant>/<upload_id>/...): upload ids are made per request, so the object ARN "
    "ends in a wildcard."
)
DOCUMENTS_OBJECTS_REASON = (
    "Job documents under the tenant/ prefix of the results bucket only "
    "(tenant/<tenant>/jobs/<job>/...): tenants and jobs are not known in advance, so the "
    "object ARN ends in a wildcard."
)


def _role(scope: Construct, construct_id: str, description: str) -> iam.Role:
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )


@jsii.implements(lambda_.IDestination)
class QueueDestination:
    """An on-failure destination that grants only `sqs:SendMessage` (CDK's SqsDestination also
    grants GetQueueAttributes and GetQueueUrl, which Lambda does not use)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self._queue = queue

    def bind(self, _scope: Construct, fn: lambda_.IFunction, *_args: Any, **_kwargs: Any) -> Any:
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self._queue.queue_arn])
        )
        return lambda_.DestinationConfig(destination=self._queue.queue_arn)


@jsii.implements(lambda_.IEventSourceDlq)
class EventSourceQueueDestination:
    """An event source's on-failure destination granting only `sqs:SendMessage`."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self._queue = queue

    def bind(self, _target: Any, target_handler: lambda_.IFunction) -> Any:
        target_handler.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self._queue.queue_arn])
        )
        return lambda_.DlqDestinationConfig(destination=self._queue.queue_arn)


def retention(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention enum member for a number of days."""
    members = [m for m in logs.RetentionDays if m is not logs.RetentionDays.INFINITE]
    return dict(zip(LOG_RETENTION_DAYS, members, strict=True))[days]


@jsii.implements(IStableListProducer)
class _PolicyDependency:
    """The logical id of a role's default policy, once every grant has been added."""

    def __init__(self, role: iam.Role) -> None:
        self._role = role

    def produce(self) -> list[str]:
        policy = self._role.node.try_find_child("DefaultPolicy")
        if policy is None:
            return []
        return [Stack.of(self._role).get_logical_id(policy.node.default_child)]  # type: ignore[arg-type]


def depend_on_policy_only(function: lambda_.Function | CfnResource, role: iam.Role) -> None:
    """CDK makes a function depend on its role and the role's policy; the role is already
    implied by `Role: !GetAtt`, and cfn-lint flags the duplicate (W3005). Keep the policy:
    the function must not run before its permissions exist."""
    cfn = function if isinstance(function, CfnResource) else function.node.default_child
    assert isinstance(cfn, CfnResource)
    cfn.add_override("DependsOn", Lazy.list(_PolicyDependency(role)))


def environment(definition: Function, values: Mapping[str, str]) -> dict[str, str]:
    """The variables the definition table says the function reads, with this deployment's
    values (a variable without one fails the synth)."""
    missing = [name for name in definition.environment if name not in values]
    if missing:
        raise KeyError(f"no value for {definition.name}'s {', '.join(missing)}")
    optional = {name: values[name] for name in definition.optional_environment if name in values}
    return {**{name: values[name] for name in definition.environment}, **optional}


def _log_group(scope: Construct, construct_id: str, retention_days: int) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        retention=retention(retention_days),
        removal_policy=RemovalPolicy.RETAIN,
    )


class SharedLayer(Construct):
    """The runtime package (without the worker) and its runtime dependencies for arm64 Python,
    bundled without Docker (`infra.packaging`)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description="claude_jobs runtime package and its runtime dependencies",
            code=lambda_.Code.from_asset(
                str(LAYER_SOURCE),
                bundling=layer_bundling(),
                asset_hash=layer_hash(),
                asset_hash_type=AssetHashType.CUSTOM,
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            removal_policy=RemovalPolicy.RETAIN,
        )


class PythonFunction(Construct):
    """A zip function from `functions/<name>/` on the shared layer, arm64, traced, with its
    own role and log group; its handler, memory, timeout, environment and description are its
    entry in the definition table."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition: Function,
        values: Mapping[str, str],
        layer: lambda_.ILayerVersion,
        log_retention_days: int,
        failure_queue: sqs.IQueue | None = None,
        no_dlq_reason: str = (
            "Invoked synchronously (API Gateway, authorizer): the caller gets the error; a "
            "dead-letter queue applies to asynchronous invocations only."
        ),
    ) -> None:
        assert definition.package == "zip", definition.name
        name = definition.name
        super().__init__(scope, construct_id)
        self.role = _role(self, "Role", f"claude-jobs {name} function")
        self.log_group = _log_group(self, "Logs", log_retention_days)
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=definition.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=definition.handler,
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR / name), exclude=list(FUNCTION_EXCLUDE)),
            layers=[layer],
            environment=environment(definition, values),
            memory_size=definition.memory_mb,
            timeout=Duration.seconds(definition.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
        )
        if failure_queue is not None:
            # Asynchronous invocations: retried twice, then recorded (request payload, error)
            # in the failure queue by an on-failure destination, which supersedes a DLQ.
            self.function.configure_async_invoke(
                retry_attempts=2,
                max_event_age=Duration.hours(6),
                on_failure=cast(lambda_.IDestination, QueueDestination(failure_queue)),
            )
            no_dlq_reason = (
                "Asynchronous failures go to an on-failure destination (the same queue), which "
                "records the request and the error; a DLQ would duplicate it."
            )
        depend_on_policy_only(self.function, self.role)
        acknowledge(self.role, _XRAY)
        acknowledge(self.function, Ack("Serverless-LambdaDLQ", no_dlq_reason))

    def allow(self, actions: list[str], resources: list[str]) -> None:
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=resources))


class WorkerFunction(Construct):
    """The worker: a container image (the Claude Code CLI does not fit a zip), arm64. Its
    handler (the image's command), timeout, environment and description are its entry in the
    definition table; its memory is the deployment's (by default the table's)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition: Function,
        values: Mapping[str, str],
        log_retention_days: int,
        memory_mb: int,
        ephemeral_storage_mb: int,
        reserved_concurrency: int | None,
        queue: sqs.IQueue,
        max_concurrency: int,
    ) -> None:
        assert definition.package == "image", definition.name
        super().__init__(scope, construct_id)
        self.role = _role(self, "Role", f"claude-jobs {definition.name} function")
        self.log_group = _log_group(self, "Logs", log_retention_days)
        self.log_group.grant_write(self.role)
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description=definition.description,
            code=lambda_.DockerImageCode.from_image_asset(
                str(REPO_ROOT),
                file=WORKER_DOCKERFILE,
                platform=Platform.LINUX_ARM64,
                exclude=worker_context_exclude(),
                cmd=[definition.handler],
            ),
            architecture=ARCHITECTURE,
            environment=environment(definition, values),
            memory_size=memory_mb,
            ephemeral_storage_size=Size.mebibytes(ephemeral_storage_mb),
            timeout=Duration.seconds(definition.timeout_seconds),
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
        )
        # One job per invocation; a failed job's message alone returns to the queue.
        self.function.add_event_source(
            SqsEventSource(
                queue,
                batch_size=1,
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
            )
        )
        depend_on_policy_only(self.function, self.role)
        acknowledge(self.role, _XRAY)
        acknowledge(
            self.function,
            Ack(
                "Serverless-LambdaDLQ",
                "Invoked by the SQS event source only: failed messages go to the jobs queue's "
                "dead-letter queue after maxReceiveCount receives.",
            ),
            Ack(
                "Serverless-LambdaEventSourceMappingDestination",
                "An on-failure destination applies to stream and Kafka sources; for SQS the "
                "queue's redrive policy to its dead-letter queue is the failure destination.",
            ),
        )

    def allow(self, actions: list[str], resources: list[str]) -> None:
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=resources))

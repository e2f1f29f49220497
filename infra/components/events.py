"""Completion events and triggers: the event bus, the rules and S3 notifications that feed the
trigger function, the jobs-table stream that feeds the notifier, and the webhook queue that
feeds the webhook function.

What triggers exist is read from the trigger function's own `triggers.json` (validated by
`claude_jobs.triggers.config`), so a trigger added there gets its rule or notification here.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from aws_cdk import CfnResource, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_lambda_event_sources import DynamoEventSource, SqsEventSource
from constructs import Construct

from claude_jobs.resources import NOTIFIER_STREAM, WEBHOOK_BATCH_SIZE
from claude_jobs.triggers.config import EventTrigger, S3Trigger, TriggersConfig, load_config
from infra.components.functions import EventSourceQueueDestination, depend_on_policy_only
from infra.components.nag import Ack, acknowledge
from infra.packaging import REPO_ROOT

TRIGGERS_FILE = REPO_ROOT / "functions" / "trigger" / "triggers.json"


def load_triggers(path: Path = TRIGGERS_FILE) -> TriggersConfig:
    return load_config(path)


def schedule_rule_name(prefix: str, trigger: EventTrigger) -> str:
    """The name of a schedule's rule: it must match the trigger's `rule` glob, which is how the
    trigger function recognises the schedule's events."""
    assert trigger.rule is not None
    name = trigger.rule.replace("*", f"{prefix}-", 1).replace("*", "").replace("?", "x")
    if not fnmatch.fnmatchcase(name, trigger.rule):
        raise ValueError(f"cannot name a rule for {trigger.name!r} matching {trigger.rule!r}")
    return name[:64]


def _s3_filters(s3_triggers: list[S3Trigger]) -> list[s3.NotificationKeyFilter]:
    """One notification per distinct (prefix, suffix); a single unfiltered one when filters
    overlap (S3 refuses overlapping notification configurations)."""
    pairs = sorted({(t.prefix, t.suffix) for t in s3_triggers})
    for i, (p1, s1) in enumerate(pairs):
        for p2, s2 in pairs[i + 1 :]:
            prefixes_overlap = p1.startswith(p2) or p2.startswith(p1)
            suffixes_overlap = s1.endswith(s2) or s2.endswith(s1)
            if prefixes_overlap and suffixes_overlap:
                return [s3.NotificationKeyFilter()]
    return [s3.NotificationKeyFilter(prefix=p or None, suffix=s or None) for p, s in pairs]


class JobEvents(Construct):
    """The bus completion events are published on, and what feeds the trigger function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        triggers: TriggersConfig,
        trigger_function: lambda_.IFunction,
        inbox_bucket_name: str,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        # By reference: the queue's policy (stateful stack) admits this deployment's rules.
        rule_dlq = sqs.Queue.from_queue_attributes(
            self,
            "RuleDlq",
            queue_arn=dead_letter_queue.queue_arn,
            queue_url=dead_letter_queue.queue_url,
            queue_name=dead_letter_queue.queue_name,
        )
        self.bus = events.EventBus(self, "Bus", event_bus_name=f"{prefix}-events")
        target = targets.LambdaFunction(
            trigger_function,
            retry_attempts=4,
            max_event_age=Duration.hours(2),
            dead_letter_queue=rule_dlq,
        )
        self.rules: dict[str, events.Rule] = {}
        for trigger in triggers.events:
            if not trigger.enabled:
                continue
            if trigger.schedule:
                # Schedules live on the default bus; the rule's name is what the function sees.
                self.rules[trigger.name] = events.Rule(
                    self,
                    f"Schedule-{trigger.name}",
                    rule_name=schedule_rule_name(prefix, trigger),
                    description=f"claude-jobs trigger {trigger.name}",
                    schedule=events.Schedule.expression(trigger.schedule),
                    targets=[target],
                )
                continue
            pattern = trigger.event_pattern()
            if pattern is None:
                continue
            self.rules[trigger.name] = events.Rule(
                self,
                f"Rule-{trigger.name}",
                event_bus=self.bus,
                description=f"claude-jobs trigger {trigger.name}",
                event_pattern=events.EventPattern(
                    source=pattern.get("source"), detail_type=pattern.get("detail-type")
                ),
                targets=[target],
            )

        # The inbox bucket lives in the stateful stack; its notification configuration is
        # managed from here, so the stateful stack never depends on this one.
        inbox_triggers = [t for t in triggers.s3 if t.enabled and t.bucket is None]
        self.inbox = s3.Bucket.from_bucket_name(self, "Inbox", inbox_bucket_name)
        for key_filter in _s3_filters(inbox_triggers) if inbox_triggers else []:
            self.inbox.add_event_notification(
                s3.EventType.OBJECT_CREATED,
                s3n.LambdaDestination(trigger_function),
                key_filter,
            )


class StreamNotifier(Construct):
    """The jobs table's stream → the notifier: completion events, `job.awaiting_approval`
    events and webhooks."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        notifier: lambda_.Function,
        table: dynamodb.ITable,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        notifier.add_event_source(
            DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=NOTIFIER_STREAM.batch_size,
                bisect_batch_on_error=NOTIFIER_STREAM.bisect_batch_on_error,
                retry_attempts=NOTIFIER_STREAM.retry_attempts,
                max_record_age=Duration.seconds(NOTIFIER_STREAM.max_record_age_seconds),
                report_batch_item_failures=True,
                on_failure=EventSourceQueueDestination(dead_letter_queue),
                # Only the records it acts on invoke it (resources.NOTIFIER_STREAM).
                filters=[lambda_.FilterCriteria.filter(p) for p in NOTIFIER_STREAM.filters],
            )
        )
        # A job waiting for approval is told once per approval: the notifier claims the
        # notice with a conditional update of the job's item (claude_jobs.notify.approval_notices).
        notifier.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[table.table_arn])
        )


class WebhookDeliveries(Construct):
    """The webhook queue → the webhook function: a few deliveries a batch, partial batch
    responses; the queue's redrive policy dead-letters a delivery whose attempts ran out."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        function.add_event_source(
            SqsEventSource(
                queue,
                batch_size=WEBHOOK_BATCH_SIZE,
                report_batch_item_failures=True,
            )
        )
        acknowledge(
            function,
            Ack(
                "Serverless-LambdaEventSourceMappingDestination",
                "An on-failure destination applies to stream and Kafka sources; for SQS the "
                "webhook queue's redrive policy to its dead-letter queue is the failure "
                "destination.",
            ),
        )


def acknowledge_notifications_handler(stack: Stack) -> None:
    """CDK's own function that writes the inbox bucket's notification configuration."""
    handler = stack.node.try_find_child(
        "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"
    )
    if handler is None:
        return
    role = handler.node.find_child("Role")
    resource = handler.node.find_child("Resource")
    assert isinstance(role, iam.Role) and isinstance(resource, CfnResource)
    depend_on_policy_only(resource, role)
    acknowledge(
        handler,
        Ack(
            "AwsSolutions-IAM4",
            "CDK's bucket-notifications custom resource uses AWSLambdaBasicExecutionRole for its "
            "own logs; it runs only during deployments.",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole"
            ],
        ),
    )

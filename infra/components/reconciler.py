"""The reconciler (docs/adr/0001-runtime-api.md): a function on a one-minute schedule that
re-drives jobs whose message vanished, re-counts each tenant's slots and ends jobs whose
approval expired, with its alarms.

Least privilege: Query on the jobs table's unfinished-jobs index (`by_open`: the keys of the
queued, running and waiting jobs and of the tenants' counters), BatchGetItem, GetItem and
UpdateItem on the jobs table (those items read consistently; an expiry reads the job and writes
it and its tenant's counter in one transaction of updates; no Scan, no other index or table),
SendMessage on the jobs queue, DeleteObject on the documents prefix (an expired job's stored
prompts); nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from claude_jobs.definitions import FUNCTIONS
from claude_jobs.resources import JOBS_TABLE
from infra.components.functions import (
    DOCUMENTS_OBJECTS,
    DOCUMENTS_OBJECTS_REASON,
    PythonFunction,
)
from infra.components.nag import Ack, acknowledge

#: How often the reconciler runs.
SCHEDULE = "rate(1 minute)"
#: Its metrics (counted by claude_jobs.reconcile.reconciler).
REDRIVEN_METRIC = "JobsRedriven"
DRIFT_METRIC = "SlotDrift"


class Reconciler(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        values: Mapping[str, str],
        layer: lambda_.ILayerVersion,
        log_retention_days: int,
        table: dynamodb.ITable,
        queue: sqs.IQueue,
        documents: str,
        topic: sns.ITopic,
        metrics_namespace: str,
        service_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = PythonFunction(
            self,
            "Function",
            definition=FUNCTIONS["reconciler"],
            values=values,
            layer=layer,
            log_retention_days=log_retention_days,
            no_dlq_reason=(
                "Invoked by a one-minute schedule: a failed run is simply the next run; nothing "
                "is lost with its event."
            ),
        )
        self.function.allow(
            ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"], [table.table_arn]
        )
        open_index = f"{table.table_arn}/index/{JOBS_TABLE.index('by_open').name}"
        self.function.allow(["dynamodb:Query"], [open_index])
        self.function.allow(["sqs:SendMessage"], [queue.queue_arn])
        # An expired approval's job: its prompts kept in the documents store are deleted.
        self.function.allow(["s3:DeleteObject"], [documents])
        acknowledge(
            self.function.role,
            Ack("AwsSolutions-IAM5", DOCUMENTS_OBJECTS_REASON, [DOCUMENTS_OBJECTS]),
        )
        self.rule = events.Rule(
            self,
            "Schedule",
            description="claude-jobs reconciler: re-drive lost job messages, re-count slots, "
            "expire approvals",
            schedule=events.Schedule.expression(SCHEDULE),
            targets=[targets.LambdaFunction(self.function.function, retry_attempts=0)],
        )
        acknowledge(
            self.rule,
            Ack(
                "Serverless-EventBusDLQ",
                "A one-minute schedule: an event that fails to reach the reconciler is replaced "
                "by the next minute's; there is nothing to keep.",
            ),
        )
        action = cw_actions.SnsAction(topic)

        def metric(name: str) -> cw.Metric:
            return cw.Metric(
                namespace=metrics_namespace,
                metric_name=name,
                dimensions_map={"service": service_name},
                period=Duration.minutes(5),
                statistic="Sum",
            )

        self.alarms: dict[str, cw.Alarm] = {}
        for alarm_id, name, description in (
            (
                "RedrivenAlarm",
                REDRIVEN_METRIC,
                "The reconciler re-sent job messages: messages vanished (an agent answering a "
                "worker's invocation through the Runtime API, a lost message) or a backlog "
                "outlasted RECONCILE_GRACE_SECONDS.",
            ),
            (
                "SlotDriftAlarm",
                DRIFT_METRIC,
                "The reconciler repaired tenants' pending/running counters: they had drifted "
                "from the jobs table.",
            ),
        ):
            alarm = cw.Alarm(
                self,
                alarm_id,
                alarm_description=description,
                metric=metric(name),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[alarm_id] = alarm

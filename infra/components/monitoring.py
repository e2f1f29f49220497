"""Operations: one CloudWatch dashboard and the alarms an on-call engineer needs, published to
an encrypted SNS topic (optionally with an e-mail subscription)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from claude_jobs.reconcile.reconciler import APPROVALS_EXPIRED_METRIC
from infra.config import InfraConfig

#: Job outcome counts the worker emits (Powertools EMF, dimension `service`).
#: The worker counts each job it ran as `Jobs_<final status>` (claude_jobs.worker.function).
JOB_SUCCEEDED_METRIC = "Jobs_succeeded"
JOB_FAILED_METRICS = ("Jobs_failed", "Jobs_timed_out")


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        api: apigw.RestApi,
        worker: lambda_.IFunction,
        api_functions: dict[str, lambda_.IFunction],
        queue: sqs.IQueue,
        dlq: sqs.IQueue,
        side_dlqs: dict[str, sqs.IQueue],
        metrics_namespace: str,
        service_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the claude-jobs alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch alarms publish to an encrypted topic only if they may use its key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, '*' means this key
            )
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{config.prefix} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = cw_actions.SnsAction(self.topic)

        five_minutes = Duration.minutes(5)
        api_5xx = api.metric_server_error(period=five_minutes, statistic="Sum")
        api_4xx = api.metric_client_error(period=five_minutes, statistic="Sum")
        api_count = api.metric_count(period=five_minutes, statistic="Sum")
        api_latency = api.metric_latency(period=five_minutes, statistic="p99")
        dlq_depth = dlq.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic="Maximum"
        )
        queue_depth = queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic="Maximum"
        )
        oldest = queue.metric_approximate_age_of_oldest_message(
            period=Duration.minutes(1), statistic="Maximum"
        )
        worker_errors = worker.metric_errors(period=five_minutes, statistic="Sum")
        worker_throttles = worker.metric_throttles(period=five_minutes, statistic="Sum")
        worker_duration = worker.metric_duration(period=five_minutes, statistic="p99")

        def job_metric(name: str) -> cw.Metric:
            return cw.Metric(
                namespace=metrics_namespace,
                metric_name=name,
                dimensions_map={"service": service_name},
                period=Duration.hours(1),
                statistic="Sum",
            )

        finished = {"ok": job_metric(JOB_SUCCEEDED_METRIC)}
        finished.update({f"bad{i}": job_metric(n) for i, n in enumerate(JOB_FAILED_METRICS)})
        bad = "+".join(f"FILL(bad{i},0)" for i in range(len(JOB_FAILED_METRICS)))
        failure_rate = cw.MathExpression(
            expression=f"IF(FILL(ok,0)+{bad} > 0, ({bad}) / (FILL(ok,0)+{bad}), 0)",
            using_metrics=finished,
            label="job failure rate",
            period=Duration.hours(1),
        )

        def alarm(alarm_id: str, description: str, **kwargs: object) -> cw.Alarm:
            created = cw.Alarm(
                self,
                alarm_id,
                alarm_description=description,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                **kwargs,  # type: ignore[arg-type]
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            return created

        gte = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        gt = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
        self.alarms = {
            "dlq": alarm(
                "DlqDepthAlarm",
                "Jobs reached the dead-letter queue: a worker failed on them 5 times.",
                metric=dlq_depth, threshold=1, evaluation_periods=1, comparison_operator=gte,
            ),
            "worker_errors": alarm(
                "WorkerErrorsAlarm",
                "The worker function raised errors (crashes, not failed jobs).",
                metric=worker_errors, threshold=1, evaluation_periods=1, comparison_operator=gte,
            ),
            "worker_throttles": alarm(
                "WorkerThrottlesAlarm",
                "The worker is throttled: raise reserved concurrency or lower max concurrency.",
                metric=worker_throttles, threshold=1, evaluation_periods=1,
                comparison_operator=gte,
            ),
            "api_5xx": alarm(
                "Api5xxAlarm",
                "The API answered 5xx responses.",
                metric=api_5xx, threshold=5, evaluation_periods=1, comparison_operator=gte,
            ),
            "job_failure_rate": alarm(
                "JobFailureRateAlarm",
                f"More than {config.job_failure_rate_threshold:.0%} of jobs finished in an hour "
                "failed or timed out.",
                metric=failure_rate, threshold=config.job_failure_rate_threshold,
                evaluation_periods=1, comparison_operator=gt,
            ),
        }  # fmt: skip
        for name, side_dlq in side_dlqs.items():
            self.alarms[f"{name.lower()}_dlq"] = alarm(
                f"{name}DlqDepthAlarm",
                f"Messages reached the {name.lower()} dead-letter queue.",
                metric=side_dlq.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=gte,
            )

        function_errors = [
            fn.metric_errors(period=five_minutes, statistic="Sum", label=f"{name} errors")
            for name, fn in api_functions.items()
        ]
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{config.prefix}-operations",
            widgets=[
                [
                    cw.GraphWidget(
                        title="API requests and errors", left=[api_count, api_4xx, api_5xx]
                    ),
                    cw.GraphWidget(title="API latency p99 (ms)", left=[api_latency]),
                    cw.GraphWidget(title="API function errors", left=function_errors),
                ],
                [
                    cw.GraphWidget(title="Jobs queue depth", left=[queue_depth, dlq_depth]),
                    cw.GraphWidget(title="Oldest queued job (s)", left=[oldest]),
                    cw.GraphWidget(
                        title="Job outcomes per hour",
                        # Approvals nobody answered in time (their jobs end failed): expected, so a
                        # figure, not an alarm.
                        left=[*finished.values(), job_metric(APPROVALS_EXPIRED_METRIC)],
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Worker invocations, errors, throttles",
                        left=[
                            worker.metric_invocations(period=five_minutes, statistic="Sum"),
                            worker_errors,
                            worker_throttles,
                        ],
                    ),
                    cw.GraphWidget(title="Worker duration p99 (ms)", left=[worker_duration]),
                    cw.SingleValueWidget(title="Job failure rate (1 h)", metrics=[failure_rate]),
                    cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values())),
                ],
            ],
        )

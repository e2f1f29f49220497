"""The dashboard and the alarms."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.synth


def _alarms(synth: Synthesized) -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        i: a["Properties"]
        for i, a in synth.service.find_resources("AWS::CloudWatch::Alarm").items()
    }


def _one(synth: Synthesized, prefix: str) -> dict:  # type: ignore[type-arg]
    (alarm,) = [a for i, a in _alarms(synth).items() if i.startswith(f"Monitoring{prefix}")]
    assert alarm["AlarmActions"] and alarm["OKActions"]
    return alarm


def test_dlq_depth_alarm_fires_on_the_first_message(synth: Synthesized) -> None:
    alarm = _one(synth, "DlqDepthAlarm")
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Namespace"] == "AWS/SQS"
    assert "JobsDlq" in json.dumps(alarm["Dimensions"])
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize(
    ("alarm_id", "metric"), [("WorkerErrorsAlarm", "Errors"), ("WorkerThrottlesAlarm", "Throttles")]
)
def test_worker_errors_and_throttles_alarm(synth: Synthesized, alarm_id: str, metric: str) -> None:
    alarm = _one(synth, alarm_id)
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["MetricName"] == metric
    assert "WorkerFunction" in json.dumps(alarm["Dimensions"])


def test_api_5xx_alarm(synth: Synthesized) -> None:
    alarm = _one(synth, "Api5xxAlarm")
    assert alarm["Namespace"] == "AWS/ApiGateway"
    assert alarm["MetricName"] == "5XXError"


def test_job_failure_rate_alarm_divides_failures_by_finished_jobs(synth: Synthesized) -> None:
    alarm = _one(synth, "JobFailureRateAlarm")
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    expression = next(m for m in metrics.values() if "Expression" in m)
    assert "/" in expression["Expression"]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m}
    # The worker's counts: claude_jobs.worker.function emits `Jobs_<final status>`.
    assert names == {"Jobs_succeeded", "Jobs_failed", "Jobs_timed_out"}
    assert alarm["Threshold"] == synth.built.config.job_failure_rate_threshold


def test_alarm_topic_is_encrypted_and_a_dashboard_exists(synth: Synthesized) -> None:
    (topic,) = synth.service.find_resources("AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]
    (dashboard,) = synth.service.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "claude-jobs-prod-operations"


@pytest.mark.parametrize(
    ("alarm_id", "queue"),
    [
        ("TriggerDlqDepthAlarm", "TriggerDlq"),
        ("NotifierDlqDepthAlarm", "NotifierDlq"),
        ("WebhookDlqDepthAlarm", "WebhookDlq"),
    ],
)
def test_every_dead_letter_queue_alarms_on_its_first_message(
    synth: Synthesized, alarm_id: str, queue: str
) -> None:
    # Given each consumer's on-failure queue, Then one message in it raises an alarm
    alarm = _one(synth, alarm_id)
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert queue in json.dumps(alarm["Dimensions"])
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"

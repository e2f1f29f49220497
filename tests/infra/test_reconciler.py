"""The reconciler's function, schedule, permissions and alarms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.synth


def _reconciler(synth: Synthesized) -> tuple[str, Mapping[str, Any]]:
    functions = synth.service.find_resources("AWS::Lambda::Function")
    (found,) = [(i, f) for i, f in functions.items() if i.startswith("ReconcilerFunction")]
    return found


def test_the_reconciler_runs_every_minute(synth: Synthesized) -> None:
    # Given the service stack
    function_id, function = _reconciler(synth)
    rules = synth.service.find_resources("AWS::Events::Rule")
    # Then one rule runs the reconciler on a one-minute schedule
    (rule,) = [
        r["Properties"]
        for r in rules.values()
        if function_id in json.dumps(r["Properties"].get("Targets", []))
    ]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    # And it knows the table, the queue, the documents' bucket and its grace
    variables = function["Properties"]["Environment"]["Variables"]
    assert {"JOBS_TABLE", "JOBS_QUEUE_URL", "RESULTS_BUCKET", "RECONCILE_GRACE_SECONDS"} <= set(
        variables
    )
    assert variables["RECONCILE_GRACE_SECONDS"] == "120"


def test_the_reconciler_may_read_and_update_jobs_send_to_the_jobs_queue_and_drop_prompts(
    synth: Synthesized,
) -> None:
    # Given the reconciler's role policy
    policies = synth.service.find_resources("AWS::IAM::Policy")
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for i, p in policies.items()
        if i.startswith("ReconcilerFunctionRole")
    ]
    actions: dict[str, str] = {}
    for statement in policy:
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        ):
            actions[action] = json.dumps(statement["Resource"])
    # Then, beside its logs and traces, it may query the unfinished-jobs index, read and update
    # the jobs table (an expired approval: the job and its tenant's counter, in a transaction
    # of updates), send to the jobs queue and delete the documents an expired job leaves: no
    # scan, no other table, index or queue, no reads of the bucket, no puts
    app = {a for a in actions if a.split(":")[0] in ("dynamodb", "sqs", "s3", "secretsmanager")}
    assert app == {
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "sqs:SendMessage",
        "s3:DeleteObject",
    }
    for action in ("dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"):
        assert "JobsTable" in actions[action] and "/index/" not in actions[action]
    assert "JobsTable" in actions["dynamodb:Query"]
    assert "/index/by_open" in actions["dynamodb:Query"]
    assert "by_tenant_shard" not in actions["dynamodb:Query"]
    assert "by_approval" not in actions["dynamodb:Query"]
    assert "JobsQueue" in actions["sqs:SendMessage"] and "Dlq" not in actions["sqs:SendMessage"]
    assert "ResultsBucket" in actions["s3:DeleteObject"]
    assert "/tenant/*" in actions["s3:DeleteObject"]


@pytest.mark.parametrize(
    ("alarm_id", "metric"), [("Redriven", "JobsRedriven"), ("SlotDrift", "SlotDrift")]
)
def test_the_reconciler_alarms_on_re_drives_and_drift(
    synth: Synthesized, alarm_id: str, metric: str
) -> None:
    alarms = synth.service.find_resources("AWS::CloudWatch::Alarm")
    (alarm,) = [
        a["Properties"] for i, a in alarms.items() if i.startswith(f"Reconciler{alarm_id}Alarm")
    ]
    assert alarm["MetricName"] == metric and alarm["Threshold"] == 1
    assert alarm["AlarmActions"] and alarm["OKActions"]


def test_the_dashboard_shows_the_approvals_the_reconciler_expired(synth: Synthesized) -> None:
    from claude_jobs.reconcile.reconciler import APPROVALS_EXPIRED_METRIC

    (dashboard,) = synth.service.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert APPROVALS_EXPIRED_METRIC == "ApprovalsExpired" and APPROVALS_EXPIRED_METRIC in body

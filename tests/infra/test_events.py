"""Triggers and completion events: rules, schedules, inbox notifications, the stream."""

from __future__ import annotations

import fnmatch
import json

import pytest
from aws_cdk.assertions import Match

from claude_jobs.resources import NOTIFIER_STREAM, SLOTS_STREAM, TRIGGER_RETRY_ATTEMPTS
from infra.components.events import load_triggers
from tests.infra.conftest import Synthesized
from tests.infra.helpers import find_one

pytestmark = pytest.mark.synth


def test_jobs_table_streams_new_and_old_images(synth: Synthesized) -> None:
    synth.stateful.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "claude-jobs-prod-jobs",
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        },
    )


def test_each_events_trigger_has_a_rule_with_a_dead_letter_queue(synth: Synthesized) -> None:
    """Given triggers.json, every enabled events trigger gets a rule on the deployment's bus,
    or a schedule on the default bus named to match the trigger's rule glob."""
    triggers = [t for t in load_triggers().events if t.enabled]
    rules = {  # the triggers' rules (the reconciler's schedule is another rule)
        name: rule
        for name, rule in synth.service.find_resources("AWS::Events::Rule").items()
        if "TriggerFunction" in json.dumps(rule["Properties"]["Targets"])
    }
    assert len(rules) == len(triggers) > 0
    bus_id = next(iter(synth.service.find_resources("AWS::Events::EventBus")))
    for trigger in triggers:
        (rule,) = [
            r["Properties"]
            for r in rules.values()
            if trigger.name in r["Properties"]["Description"]
        ]
        (target,) = rule["Targets"]
        assert "TriggerFunction" in json.dumps(target["Arn"])
        assert "TriggerDlq" in json.dumps(target["DeadLetterConfig"])
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4
        if trigger.schedule:
            assert rule["ScheduleExpression"] == trigger.schedule
            assert "EventBusName" not in rule
            assert trigger.rule is not None
            assert fnmatch.fnmatchcase(rule["Name"], trigger.rule)
        else:
            assert rule["EventBusName"] == {"Ref": bus_id}
            pattern = trigger.event_pattern()
            assert pattern is not None
            assert rule["EventPattern"] == pattern


def test_the_trigger_dlq_admits_only_this_deployments_rules(synth: Synthesized) -> None:
    dlq_id, _ = find_one(
        synth.stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-trigger-dlq"}
    )
    synth.stateful.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": dlq_id}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Action": "sqs:SendMessage",
                                "Condition": {"ArnLike": {"aws:SourceArn": Match.any_value()}},
                            }
                        )
                    ]
                )
            },
        },
    )
    policy = next(
        p
        for p in synth.stateful.find_resources("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": dlq_id}]
    )
    allow = next(
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"
    )
    assert "rule/claude-jobs-prod-*" in json.dumps(allow["Condition"])


def test_trigger_failures_go_to_the_trigger_dlq(synth: Synthesized) -> None:
    (config,) = synth.service.find_resources("AWS::Lambda::EventInvokeConfig").values()
    props = config["Properties"]
    # The local stack's trigger relay retries as often (claude_jobs.resources)
    assert props["MaximumRetryAttempts"] == TRIGGER_RETRY_ATTEMPTS == 2
    assert "TriggerDlq" in json.dumps(props["DestinationConfig"]["OnFailure"]["Destination"])


def test_inbox_notifications_follow_the_s3_triggers(synth: Synthesized) -> None:
    prefixes = {t.prefix for t in load_triggers().s3 if t.enabled and t.bucket is None}
    (notifications,) = synth.service.find_resources("Custom::S3BucketNotifications").values()
    configs = notifications["Properties"]["NotificationConfiguration"][
        "LambdaFunctionConfigurations"
    ]
    assert all(c["Events"] == ["s3:ObjectCreated:*"] for c in configs)
    filtered = {
        rule["Value"]
        for c in configs
        for rule in c.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        if rule["Name"] == "prefix"
    }
    assert filtered == prefixes or (len(configs) == 1 and "Filter" not in configs[0])
    assert notifications["Properties"]["Managed"] is False


def test_notifier_reads_the_stream_with_partial_failures(synth: Synthesized) -> None:
    mapping = next(
        m["Properties"]
        for m in synth.service.find_resources("AWS::Lambda::EventSourceMapping").values()
        if "StartingPosition" in m["Properties"]
    )
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # The same settings as the local stack's stream event source (claude_jobs.resources)
    assert mapping["MaximumRetryAttempts"] == NOTIFIER_STREAM.retry_attempts
    assert mapping["BatchSize"] == NOTIFIER_STREAM.batch_size
    assert mapping["MaximumRecordAgeInSeconds"] == NOTIFIER_STREAM.max_record_age_seconds
    assert "NotifierDlq" in json.dumps(mapping["DestinationConfig"]["OnFailure"]["Destination"])


def test_the_notifier_may_only_update_the_jobs_table_to_claim_approval_notices(
    synth: Synthesized,
) -> None:
    # Given the notifier's role policy
    statements = [
        s
        for i, p in synth.service.find_resources("AWS::IAM::Policy").items()
        if i.startswith("NotifierRole")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    writes = [
        s
        for s in statements
        if any(
            a.startswith("dynamodb:")
            and "Stream" not in a
            and a != "dynamodb:GetRecords"
            and a != "dynamodb:GetShardIterator"
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        )
    ]
    # Then its one table write is UpdateItem on the jobs table itself (no index, no other
    # table, no puts or deletes): the conditional claim of a waiting job's notice
    (write,) = writes
    assert write["Action"] == "dynamodb:UpdateItem"
    assert "JobsTable" in json.dumps(write["Resource"]) and "index" not in json.dumps(
        write["Resource"]
    )


def test_each_stream_function_is_invoked_only_by_the_records_it_acts_on(
    synth: Synthesized,
) -> None:
    # Given the jobs table's stream mappings, by function
    filters = {
        json.dumps(m["Properties"]["FunctionName"]): [
            json.loads(f["Pattern"]) for f in m["Properties"]["FilterCriteria"]["Filters"]
        ]
        for m in synth.service.find_resources("AWS::Lambda::EventSourceMapping").values()
        if "StartingPosition" in m["Properties"]
    }
    by_function = {
        name: patterns
        for function, patterns in filters.items()
        for name in ("Notifier", "Expiry")
        if f'"{name}' in function
    }
    # Then each carries its patterns from claude_jobs.resources, which the local stack's stream
    # source applies too: the notifier a job that ends, waits on a decision or (a GitHub job)
    # starts; the expiry function TTL deletions only
    assert by_function == {
        "Notifier": [dict(p) for p in NOTIFIER_STREAM.filters],
        "Expiry": [dict(p) for p in SLOTS_STREAM.filters],
    }
    (ends, github) = by_function["Notifier"]
    assert set(ends["dynamodb"]["NewImage"]["status"]["S"]) == {
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
        "awaiting_approval",
    }
    assert github["dynamodb"]["NewImage"] == {
        "status": {"S": ["running"]},
        "source": {"S": ["github"]},
    }
    assert by_function["Expiry"] == [{"eventName": ["REMOVE"]}]

"""The jobs and webhook queues, their DLQs and event sources."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from claude_jobs import resources
from tests.infra.conftest import Synthesized
from tests.infra.helpers import find_one

pytestmark = pytest.mark.synth


def test_visibility_timeout_is_at_least_six_worker_timeouts(synth: Synthesized) -> None:
    """Given the synthesized app, the queue hides a message for >= 6 x the worker's timeout."""
    _, worker = find_one(synth.service, "AWS::Lambda::Function", {"PackageType": "Image"})
    _, queue = find_one(
        synth.stateful,
        "AWS::SQS::Queue",
        {"QueueName": resources.JOBS_QUEUE.name("claude-jobs-prod")},
    )
    assert worker["Properties"]["Timeout"] == resources.WORKER_TIMEOUT_SECONDS == 900
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * worker["Properties"]["Timeout"]


def test_redrive_to_a_dlq_that_keeps_messages_longer(synth: Synthesized) -> None:
    """Given the jobs queue, it redrives after >= 5 receives to a DLQ with longer retention."""
    dlq_id, dlq = find_one(
        synth.stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-jobs-dlq"}
    )
    _, queue = find_one(synth.stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-jobs"})
    redrive = queue["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert redrive["maxReceiveCount"] >= 5
    assert (
        dlq["Properties"]["MessageRetentionPeriod"] > queue["Properties"]["MessageRetentionPeriod"]
    )


def test_queues_are_encrypted_and_tls_only(synth: Synthesized) -> None:
    synth.stateful.all_resources_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})
    synth.stateful.resource_count_is("AWS::SQS::QueuePolicy", len(resources.QUEUES))
    synth.stateful.all_resources_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_event_source_takes_one_job_at_a_time(synth: Synthesized) -> None:
    """Given the worker's SQS event source: batch size 1, partial batch responses, and the
    configured maximum concurrency."""
    synth.service.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": synth.built.config.worker_max_concurrency},
        },
    )


def test_max_concurrency_comes_from_configuration(custom_synth: Synthesized) -> None:
    custom_synth.service.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"ScalingConfig": {"MaximumConcurrency": 3}}
    )


def test_the_webhook_queue_redrives_after_its_attempts(synth: Synthesized) -> None:
    """Given the webhook queue: it hides a message for >= 6 x the webhook function's timeout
    and dead-letters it after WEBHOOK_MAX_ATTEMPTS receives; the function consumes it a few
    messages at a time with partial batch responses."""
    _, function = find_one(
        synth.service,
        "AWS::Lambda::Function",
        {"Description": Match.string_like_regexp("^Webhook")},
    )
    dlq_id, _ = find_one(
        synth.stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-webhooks-dlq"}
    )
    _, queue = find_one(
        synth.stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-webhooks"}
    )
    timeout = function["Properties"]["Timeout"]
    assert timeout == resources.WEBHOOK_TIMEOUT_SECONDS
    assert timeout >= resources.WEBHOOK_BATCH_SIZE * resources.WEBHOOK_DEADLINE_SECONDS
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * timeout
    redrive = queue["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert redrive["maxReceiveCount"] == resources.WEBHOOK_MAX_ATTEMPTS
    synth.service.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": resources.WEBHOOK_BATCH_SIZE,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "EventSourceArn": Match.any_value(),
        },
    )

"""Least privilege: each function's role allows exactly what its code calls, on its resources."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import Synthesized
from tests.infra.helpers import (
    GITHUB_SECRETS_ARN,
    VAULT_SECRETS,
    find_one,
    resolve,
    role_permissions,
)

pytestmark = pytest.mark.synth


def _ids(synth: Synthesized) -> dict[str, str]:
    """Logical ids of the stateful resources, found by what they are."""
    stateful = synth.stateful
    return {
        "jobs": find_one(stateful, "AWS::DynamoDB::Table", {"TableName": "claude-jobs-prod-jobs"})[
            0
        ],
        "keys": find_one(
            stateful, "AWS::DynamoDB::Table", {"TableName": "claude-jobs-prod-api-keys"}
        )[0],
        "events": find_one(
            stateful, "AWS::DynamoDB::Table", {"TableName": "claude-jobs-prod-events"}
        )[0],
        "queue": find_one(stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-jobs"})[0],
        "bucket": next(
            i for i in stateful.find_resources("AWS::S3::Bucket") if "ResultsBucket" in i
        ),
        "inbox": next(i for i in stateful.find_resources("AWS::S3::Bucket") if "InboxBucket" in i),
        "secret": find_one(
            stateful,
            "AWS::SecretsManager::Secret",
            {"Name": "claude-jobs-prod/anthropic-api-key"},
        )[0],
        "webhook_secret": find_one(
            stateful,
            "AWS::SecretsManager::Secret",
            {"Name": "claude-jobs-prod/webhook-signing-key"},
        )[0],
        "page_token_secret": find_one(
            stateful,
            "AWS::SecretsManager::Secret",
            {"Name": "claude-jobs-prod/page-token-key"},
        )[0],
        "jobs_dlq": find_one(
            stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-jobs-dlq"}
        )[0],
        "trigger_dlq": find_one(
            stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-trigger-dlq"}
        )[0],
        "notifier_dlq": find_one(
            stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-notifier-dlq"}
        )[0],
        "webhook_queue": find_one(
            stateful, "AWS::SQS::Queue", {"QueueName": "claude-jobs-prod-webhooks"}
        )[0],
    }


def _function_role(synth: Synthesized, name: str) -> tuple[str, str]:
    """(role id, log group id) of the function whose logical id starts with `name`."""
    functions = synth.service.find_resources("AWS::Lambda::Function")
    (fn,) = [f for i, f in functions.items() if i.startswith(f"{name}Function")]
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    log_group_id = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    return role_id, log_group_id


def _permissions(synth: Synthesized, name: str) -> set[tuple[str, str]]:
    outputs: dict[str, Any] = synth.stateful.to_json().get("Outputs", {})
    role_id, _ = _function_role(synth, name)
    return role_permissions(synth.service, role_id, outputs)


def _baseline(synth: Synthesized, name: str) -> set[tuple[str, str]]:
    """What every function may do: write its own log group, send traces."""
    _, log_group_id = _function_role(synth, name)
    return {
        ("logs:CreateLogStream", f"{log_group_id}.Arn"),
        ("logs:PutLogEvents", f"{log_group_id}.Arn"),
        ("xray:PutTraceSegments", "*"),
        ("xray:PutTelemetryRecords", "*"),
    }


def test_submit_writes_jobs_and_sends_messages(synth: Synthesized) -> None:
    ids = _ids(synth)
    table = f"{ids['jobs']}.Arn"
    assert _permissions(synth, "Submit") == _baseline(synth, "Submit") | {
        ("dynamodb:GetItem", table),
        ("dynamodb:PutItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:DeleteItem", table),
        ("sqs:SendMessage", f"{ids['queue']}.Arn"),
        ("s3:PutObject", f"{ids['bucket']}.Arn/tenant/*"),
        ("s3:DeleteObject", f"{ids['bucket']}.Arn/tenant/*"),
        # DELETE /v1/sessions/{id}: its transcript's objects (listed under sessions/ only)
        ("s3:DeleteObject", f"{ids['bucket']}.Arn/sessions/*"),
        ("s3:ListBucket", f"{ids['bucket']}.Arn"),
        # Files: upload records and the presigned PUT, on uploads/ only
        ("s3:PutObject", f"{ids['bucket']}.Arn/uploads/*"),
        ("s3:GetObject", f"{ids['bucket']}.Arn/uploads/*"),
    }


def test_listing_the_results_bucket_is_limited_to_session_transcripts(
    synth: Synthesized,
) -> None:
    """Given every policy that allows s3:ListBucket, each is conditioned on the sessions/
    prefix: no role can list the tenants' documents or results."""
    found = 0
    for policy in synth.service.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            if "s3:ListBucket" in ([actions] if isinstance(actions, str) else actions):
                found += 1
                assert statement["Condition"] == {"StringLike": {"s3:prefix": ["sessions/*"]}}
    assert found == 2  # the submit function and the worker


def test_status_reads_jobs_its_index_and_results(synth: Synthesized) -> None:
    ids = _ids(synth)
    assert _permissions(synth, "Status") == _baseline(synth, "Status") | {
        ("dynamodb:GetItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:BatchGetItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:Query", f"{ids['jobs']}.Arn/index/by_tenant_shard"),
        # GET /v1/approvals: the sparse index of waiting jobs (and nothing else new)
        ("dynamodb:Query", f"{ids['jobs']}.Arn/index/by_approval"),
        # Progress events: a Query of one job's batches.
        ("dynamodb:Query", f"{ids['events']}.Arn"),
        ("s3:GetObject", f"{ids['bucket']}.Arn/results/*"),
        ("s3:GetObject", f"{ids['bucket']}.Arn/tenant/*"),
        # The generated key of list page tokens (issue 20).
        ("secretsmanager:GetSecretValue", ids["page_token_secret"]),
    }


def test_the_lost_jobs_function_consumes_the_jobs_dlq_and_ends_jobs(synth: Synthesized) -> None:
    ids = _ids(synth)
    dlq = f"{ids['jobs_dlq']}.Arn"
    assert _permissions(synth, "Lostjobs") == _baseline(synth, "Lostjobs") | {
        ("dynamodb:GetItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:UpdateItem", f"{ids['jobs']}.Arn"),
        ("sqs:ReceiveMessage", dlq),
        ("sqs:DeleteMessage", dlq),
        ("sqs:ChangeMessageVisibility", dlq),
        ("sqs:GetQueueAttributes", dlq),
        ("sqs:GetQueueUrl", dlq),
    }


def test_the_expiry_function_reads_the_stream_and_frees_slots(synth: Synthesized) -> None:
    ids = _ids(synth)
    stream = f"{ids['jobs']}.StreamArn"
    assert _permissions(synth, "Expiry") == _baseline(synth, "Expiry") | {
        ("dynamodb:PutItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:UpdateItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:ListStreams", "*"),
        ("dynamodb:DescribeStream", stream),
        ("dynamodb:GetRecords", stream),
        ("dynamodb:GetShardIterator", stream),
        ("sqs:SendMessage", f"{ids['notifier_dlq']}.Arn"),
    }


def test_authorizer_only_reads_keys(synth: Synthesized) -> None:
    ids = _ids(synth)
    assert _permissions(synth, "Authorizer") == _baseline(synth, "Authorizer") | {
        ("dynamodb:GetItem", f"{ids['keys']}.Arn"),
    }


def test_worker_consumes_the_queue_and_reads_the_secret(synth: Synthesized) -> None:
    ids = _ids(synth)
    queue = f"{ids['queue']}.Arn"
    assert _permissions(synth, "Worker") == _baseline(synth, "Worker") | {
        ("dynamodb:GetItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:UpdateItem", f"{ids['jobs']}.Arn"),
        # Progress events: a conditional PutItem per batch (GetItem: was it ours?), the last
        # seq (Query) on a later attempt.
        ("dynamodb:PutItem", f"{ids['events']}.Arn"),
        ("dynamodb:GetItem", f"{ids['events']}.Arn"),
        ("dynamodb:Query", f"{ids['events']}.Arn"),
        ("s3:GetObject", f"{ids['bucket']}.Arn/tenant/*"),
        ("s3:PutObject", f"{ids['bucket']}.Arn/tenant/*"),
        ("s3:DeleteObject", f"{ids['bucket']}.Arn/tenant/*"),
        # Session transcripts: loaded before a run, saved during and after it
        ("s3:GetObject", f"{ids['bucket']}.Arn/sessions/*"),
        ("s3:PutObject", f"{ids['bucket']}.Arn/sessions/*"),
        ("s3:ListBucket", f"{ids['bucket']}.Arn"),
        ("s3:GetObject", f"{ids['inbox']}.Arn/*"),
        ("s3:GetObjectVersion", f"{ids['inbox']}.Arn/*"),
        ("s3:GetObject", f"{ids['bucket']}.Arn/uploads/*"),
        ("secretsmanager:GetSecretValue", ids["secret"]),
        # MCP servers: the tenants' vault entries, by their name prefix only
        ("secretsmanager:GetSecretValue", VAULT_SECRETS),
        # Repositories: tenants' GitHub credentials, by their name prefix only
        ("secretsmanager:GetSecretValue", GITHUB_SECRETS_ARN),
        ("sqs:ReceiveMessage", queue),
        ("sqs:DeleteMessage", queue),
        ("sqs:ChangeMessageVisibility", queue),
        ("sqs:GetQueueAttributes", queue),
        ("sqs:GetQueueUrl", queue),
        # A job of a tenant at its running share comes back as a new, delayed message.
        ("sqs:SendMessage", queue),
    }


def test_trigger_submits_jobs_and_reads_inbox_objects(synth: Synthesized) -> None:
    ids = _ids(synth)
    table = f"{ids['jobs']}.Arn"
    assert _permissions(synth, "Trigger") == _baseline(synth, "Trigger") | {
        ("dynamodb:GetItem", table),
        ("dynamodb:PutItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:DeleteItem", table),
        ("sqs:SendMessage", f"{ids['queue']}.Arn"),
        ("sqs:SendMessage", f"{ids['trigger_dlq']}.Arn"),
        ("s3:GetObject", f"{ids['inbox']}.Arn/*"),
        ("s3:GetObjectVersion", f"{ids['inbox']}.Arn/*"),
        ("s3:PutObject", f"{ids['bucket']}.Arn/tenant/*"),
        ("s3:DeleteObject", f"{ids['bucket']}.Arn/tenant/*"),
    }


def test_notifier_reads_the_stream_and_publishes(synth: Synthesized) -> None:
    ids = _ids(synth)
    bus_id = next(iter(synth.service.find_resources("AWS::Events::EventBus")))
    stream = f"{ids['jobs']}.StreamArn"
    assert _permissions(synth, "Notifier") == _baseline(synth, "Notifier") | {
        ("events:PutEvents", f"{bus_id}.Arn"),
        ("s3:GetObject", f"{ids['bucket']}.Arn/tenant/*"),
        # approvals: the notice of a waiting job, claimed once per approval id
        ("dynamodb:UpdateItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:ListStreams", "*"),
        ("dynamodb:DescribeStream", stream),
        ("dynamodb:GetRecords", stream),
        ("dynamodb:GetShardIterator", stream),
        ("sqs:SendMessage", f"{ids['notifier_dlq']}.Arn"),
        ("sqs:SendMessage", f"{ids['webhook_queue']}.Arn"),
    }


def test_the_webhook_function_consumes_its_queue_and_records_deliveries(
    synth: Synthesized,
) -> None:
    ids = _ids(synth)
    queue = f"{ids['webhook_queue']}.Arn"
    assert _permissions(synth, "Webhook") == _baseline(synth, "Webhook") | {
        ("dynamodb:GetItem", f"{ids['jobs']}.Arn"),
        ("dynamodb:UpdateItem", f"{ids['jobs']}.Arn"),
        ("secretsmanager:GetSecretValue", ids["webhook_secret"]),
        ("sqs:ReceiveMessage", queue),
        ("sqs:DeleteMessage", queue),
        ("sqs:ChangeMessageVisibility", queue),
        ("sqs:GetQueueAttributes", queue),
        ("sqs:GetQueueUrl", queue),
    }


def test_only_the_worker_can_read_the_anthropic_key(synth: Synthesized) -> None:
    """Given every policy of both stacks, only the worker's role may read the Anthropic key
    (the webhook function reads only the webhook signing key), and no policy grants a wildcard
    service action."""
    outputs: dict[str, Any] = synth.stateful.to_json().get("Outputs", {})
    ids = _ids(synth)
    readers: dict[str, set[str]] = {}
    for template in (synth.stateful, synth.service):
        for policy_id, policy in template.find_resources("AWS::IAM::Policy").items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                actions = [actions] if isinstance(actions, str) else actions
                assert not any(a.endswith(":*") or a == "*" for a in actions), policy_id
                if any(a.startswith("secretsmanager:") for a in actions):
                    assert actions == ["secretsmanager:GetSecretValue"], policy_id
                    resources = statement["Resource"]
                    resources = resources if isinstance(resources, list) else [resources]
                    reader = readers.setdefault(policy_id.split("Role")[0], set())
                    reader.update(resolve(r, outputs) for r in resources)
    assert readers == {
        # (and the tenants' vault entries and GitHub credentials, by their name prefixes)
        "Worker": {ids["secret"], VAULT_SECRETS, GITHUB_SECRETS_ARN},
        "Webhook": {ids["webhook_secret"]},
        "Status": {ids["page_token_secret"]},
    }


def test_roles_carry_no_managed_policies_but_the_api_gateway_logging_role(
    synth: Synthesized,
) -> None:
    """Given the service stack's roles, only AWS-service plumbing (API Gateway's logging role,
    CDK's bucket-notifications custom resource) carries a managed policy."""
    roles = synth.service.find_resources("AWS::IAM::Role")
    with_managed = {i for i, r in roles.items() if r["Properties"].get("ManagedPolicyArns")}
    assert len(with_managed) == 2
    assert any("CloudWatchRole" in i for i in with_managed)
    assert any(i.startswith("BucketNotificationsHandler") for i in with_managed)


def test_an_imported_secret_is_granted_by_name(custom_synth: Synthesized) -> None:
    """Given a secret imported by name, the worker may read that secret (any version suffix)
    and its ANTHROPIC_SECRET_ID is the name."""
    names = [
        s["Properties"]["Name"]
        for s in custom_synth.stateful.find_resources("AWS::SecretsManager::Secret").values()
    ]
    assert sorted(names) == [
        "claude-jobs-dev/page-token-key",
        "claude-jobs-dev/webhook-signing-key",
    ]
    role_id, _ = (
        next(
            f["Properties"]["Role"]["Fn::GetAtt"][0]
            for i, f in custom_synth.service.find_resources("AWS::Lambda::Function").items()
            if i.startswith("WorkerFunction")
        ),
        None,
    )
    policies = custom_synth.service.find_resources("AWS::IAM::Policy")
    statements = [
        s
        for p in policies.values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "secretsmanager:GetSecretValue"
    ]
    assert len(statements) == 1
    # (and the vault, MCP servers' credentials, and the tenants' GitHub credentials)
    ends = sorted(r["Fn::Join"][1][-1] for r in statements[0]["Resource"])
    assert ends == [
        ":secret:claude-jobs-dev/github/*",
        ":secret:claude-jobs-dev/vault/*",
        ":secret:shared/anthropic-key-??????",
    ]
    _, worker = find_one(custom_synth.service, "AWS::Lambda::Function", {"PackageType": "Image"})
    env = worker["Properties"]["Environment"]["Variables"]
    assert env["ANTHROPIC_SECRET_ID"] == "shared/anthropic-key"


def test_only_the_worker_may_read_the_tenants_vaults(synth: Synthesized) -> None:
    """Given every role's policies, the vault's name prefix is granted to the worker alone,
    for reading only (the operator's `claude-jobs vault` writes with its own credentials)."""
    readers = []
    for policy in synth.service.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "/vault/" in str(statement["Resource"]):
                readers.append((statement["Action"], policy["Properties"]["Roles"]))
    ((action, roles),) = readers
    assert action == "secretsmanager:GetSecretValue"
    assert len(roles) == 1 and "Worker" in str(roles[0])

"""The stateful stack: tables, results bucket, secret; all retained."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from claude_jobs import resources
from tests.infra.conftest import Synthesized
from tests.infra.helpers import find_one

pytestmark = pytest.mark.synth


@pytest.mark.parametrize("spec", resources.TABLES, ids=lambda t: t.logical_id)
def test_tables_match_the_shared_definitions(synth: Synthesized, spec: resources.Table) -> None:
    """Given a table definition from claude_jobs.resources, the stack has that table with the
    same keys, indexes and TTL, on demand, encrypted, with point-in-time recovery."""
    _, table = find_one(
        synth.stateful, "AWS::DynamoDB::Table", {"TableName": spec.name("claude-jobs-prod")}
    )
    props = table["Properties"]
    assert props["KeySchema"][0] == {"AttributeName": spec.partition_key.name, "KeyType": "HASH"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert {ix["IndexName"] for ix in props.get("GlobalSecondaryIndexes", [])} == {
        ix.name for ix in spec.indexes
    }
    assert {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]} == {
        (a.name, a.type) for a in spec.attributes
    }
    if spec.ttl_attribute:
        assert props["TimeToLiveSpecification"] == {
            "AttributeName": spec.ttl_attribute,
            "Enabled": True,
        }
    else:
        assert "TimeToLiveSpecification" not in props
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


def test_jobs_table_has_ttl_and_pitr(synth: Synthesized) -> None:
    synth.stateful.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "claude-jobs-prod-jobs",
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    )


def test_every_stateful_resource_is_retained(synth: Synthesized) -> None:
    """Given the stateful stack, deleting it leaves every data-holding resource in place."""
    for logical_id, resource in synth.stateful.to_json()["Resources"].items():
        if resource["Type"] in {
            "AWS::CDK::Metadata",
            "AWS::S3::BucketPolicy",
            "AWS::SQS::QueuePolicy",
        }:
            continue
        assert resource.get("DeletionPolicy") == "Retain", logical_id
        assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def test_results_bucket_is_private_encrypted_tls_only_and_expires(synth: Synthesized) -> None:
    bucket_id = next(i for i in synth.stateful.find_resources("AWS::S3::Bucket") if "Results" in i)
    synth.stateful.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Prefix": resources.RESULTS_PREFIX,
                                "ExpirationInDays": resources.RESULTS_EXPIRY_DAYS,
                                "Status": "Enabled",
                            }
                        ),
                        Match.object_like(
                            {
                                "Prefix": resources.DOCUMENTS_PREFIX,
                                "ExpirationInDays": resources.RESULTS_EXPIRY_DAYS,
                                "Status": "Enabled",
                            }
                        ),
                        Match.object_like(
                            {
                                "Prefix": resources.SESSIONS_PREFIX,
                                "ExpirationInDays": resources.SESSION_RETENTION_DAYS,
                                "Status": "Enabled",
                            }
                        ),
                    ]
                )
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "results-bucket/"}),
        },
    )
    synth.stateful.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ),
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}},
                            }
                        ),
                    ]
                )
            },
        },
    )


def test_every_bucket_blocks_public_access_and_is_encrypted(synth: Synthesized) -> None:
    synth.stateful.resource_count_is("AWS::S3::Bucket", 3)
    synth.stateful.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": Match.any_value(),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        },
    )


def test_secret_is_created_without_a_value(synth: Synthesized) -> None:
    _, secret = find_one(
        synth.stateful,
        "AWS::SecretsManager::Secret",
        {"Name": "claude-jobs-prod/anthropic-api-key"},
    )
    assert "SecretString" not in secret["Properties"]
    assert "GenerateSecretString" not in secret["Properties"]
    assert secret["DeletionPolicy"] == "Retain"


def test_session_transcripts_expire_after_the_deployments_retention(
    custom_synth: Synthesized,
) -> None:
    """Given `session_retention_days=7`, the sessions/ prefix expires after 7 days and the
    functions that write session items get the same figure."""
    custom_synth.stateful.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"Prefix": "sessions/", "ExpirationInDays": 7})]
                )
            }
        },
    )
    custom_synth.service.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like({"SESSION_RETENTION_DAYS": "7"}),
            }
        },
    )

"""Stateful data: the jobs and API keys tables and the results bucket.

Tables are built from `claude_jobs.resources`, the same definitions the local stack provisions,
so names, keys, indexes and the TTL attribute cannot drift between AWS and the emulator.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from claude_jobs import resources
from infra.components.nag import Ack, acknowledge

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {"ALL": dynamodb.ProjectionType.ALL, "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY}


def _attribute(attr: resources.Attribute | None) -> dynamodb.Attribute | None:
    if attr is None:
        return None
    return dynamodb.Attribute(name=attr.name, type=_ATTRIBUTE_TYPES[attr.type])


def build_table(scope: Construct, spec: resources.Table, prefix: str) -> dynamodb.Table:
    """A production table from a resource definition: on-demand, encrypted with the AWS managed
    key, point-in-time recovery, deletion protection, retained on stack deletion."""
    table = dynamodb.Table(
        scope,
        spec.logical_id,
        table_name=spec.name(prefix),
        partition_key=_attribute(spec.partition_key),
        sort_key=_attribute(spec.sort_key),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=spec.ttl_attribute,
        stream=dynamodb.StreamViewType[spec.stream_view_type] if spec.stream_view_type else None,
        deletion_protection=True,
        removal_policy=RemovalPolicy.RETAIN,
    )
    for index in spec.indexes:
        table.add_global_secondary_index(
            index_name=index.name,
            partition_key=_attribute(index.partition_key),
            sort_key=_attribute(index.sort_key),
            projection_type=_PROJECTIONS[index.projection],
        )
    return table


#: Objects dropped in the inbox (inputs of S3-triggered jobs) expire after this many days;
#: replaced versions after a week.
INBOX_EXPIRY_DAYS = 30


class JobsData(Construct):
    """The jobs table, the API keys table, the progress events table, the results and inbox
    buckets, and the bucket that receives their access logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        session_days: int = resources.SESSION_RETENTION_DAYS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.jobs_table = build_table(self, resources.JOBS_TABLE, prefix)
        self.keys_table = build_table(self, resources.API_KEYS_TABLE, prefix)
        self.events_table = build_table(self, resources.EVENTS_TABLE, prefix)

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs_bucket,
            Ack("AwsSolutions-S1", "This is the access-log bucket; logging it to itself loops."),
        )

        self.results_bucket = self._private_bucket(
            "ResultsBucket",
            log_prefix="results-bucket/",
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-results",
                    prefix=resources.RESULTS_PREFIX,
                    expiration=Duration.days(resources.RESULTS_EXPIRY_DAYS),
                ),
                # Job documents too large for the job item (prompts, schemas, results): they
                # live as long as results do; a prompt is deleted when its job ends, and this
                # rule removes what a failed delete leaves.
                s3.LifecycleRule(
                    id="expire-documents",
                    prefix=resources.DOCUMENTS_PREFIX,
                    expiration=Duration.days(resources.RESULTS_EXPIRY_DAYS),
                ),
                # Session transcripts (`sessions/<tenant>/<session>/`): each continuation
                # writes new parts, so a live session's newest parts are always younger than
                # its item's expiry; a deleted session's parts are removed at once.
                s3.LifecycleRule(
                    id="expire-sessions",
                    prefix=resources.SESSIONS_PREFIX,
                    expiration=Duration.days(session_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )

        # Files dropped here become jobs (S3 triggers). Versioned: a job names the exact
        # version it was made from, and a re-upload of the same key is a new job.
        self.inbox_bucket = self._private_bucket(
            "InboxBucket",
            log_prefix="inbox-bucket/",
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-inputs",
                    expiration=Duration.days(INBOX_EXPIRY_DAYS),
                    noncurrent_version_expiration=Duration.days(7),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )

    def _private_bucket(
        self,
        construct_id: str,
        *,
        log_prefix: str,
        versioned: bool,
        lifecycle_rules: list[s3.LifecycleRule],
    ) -> s3.Bucket:
        """A retained bucket: S3-managed encryption, TLS 1.2+ only, no public access, owner-
        enforced objects, access logs to the access-log bucket."""
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=versioned,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=lifecycle_rules,
            removal_policy=RemovalPolicy.RETAIN,
        )

"""AWS list prices used by the benchmarks: the one price table.

Source: the public pricing pages of each service, region us-east-1 (N. Virginia), as read on
2026-11-29 (DynamoDB on-demand after the November 2024 reduction; Lambda arm64; free tiers
ignored). Prices are USD. Update the date with the figures.
"""

from __future__ import annotations

SOURCE = "AWS public pricing pages, us-east-1, read 2026-11-29 (free tiers ignored)"

# DynamoDB on-demand (Standard table class): https://aws.amazon.com/dynamodb/pricing/on-demand/
DYNAMODB_PER_MILLION_WRU = 0.625
DYNAMODB_PER_MILLION_RRU = 0.125
DYNAMODB_PER_GB_MONTH = 0.25
# S3 Standard: https://aws.amazon.com/s3/pricing/
S3_PER_THOUSAND_PUT = 0.005  # PUT, COPY, POST, LIST
S3_PER_THOUSAND_GET = 0.0004  # GET, SELECT and all other requests (HEAD)
S3_PER_GB_MONTH = 0.023
# SQS standard queue, per 64 KiB request chunk: https://aws.amazon.com/sqs/pricing/
SQS_PER_MILLION_REQUESTS = 0.40
# Lambda arm64: https://aws.amazon.com/lambda/pricing/
LAMBDA_ARM_PER_GB_SECOND = 0.0000133334
LAMBDA_PER_MILLION_REQUESTS = 0.20
# API Gateway REST API, first 333 million requests a month: https://aws.amazon.com/api-gateway/pricing/
API_GATEWAY_REST_PER_MILLION = 3.50
# EventBridge custom events, per 64 KiB chunk: https://aws.amazon.com/eventbridge/pricing/
EVENTBRIDGE_PER_MILLION_EVENTS = 1.00
# CloudWatch Logs standard ingestion: https://aws.amazon.com/cloudwatch/pricing/
CLOUDWATCH_LOGS_PER_GB_INGESTED = 0.50
# Secrets Manager API calls: https://aws.amazon.com/secrets-manager/pricing/
SECRETS_MANAGER_PER_10K_CALLS = 0.05

#: Size unit of a billed SQS request and EventBridge event.
BILLING_CHUNK_BYTES = 64 * 1024
# Fargate Linux/ARM (Graviton), per hour: https://aws.amazon.com/fargate/pricing/ (not re-read
# with the figures above: as listed for us-east-1 in 2024-2025).
FARGATE_ARM_PER_VCPU_HOUR = 0.03238
FARGATE_ARM_PER_GB_HOUR = 0.00356

#: Hours in a billing month, as AWS prorates per-GB-month storage.
HOURS_PER_MONTH = 730
#: DynamoDB's per-item storage overhead (bytes) on top of the item's size.
DYNAMODB_ITEM_OVERHEAD_BYTES = 100
#: A strongly consistent read (a Scan with ConsistentRead) costs 1 read unit per 4 KB read.
DYNAMODB_READ_UNIT_BYTES = 4096

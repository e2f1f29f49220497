"""Triggers in the local stack, where the emulator has no Lambda to notify.

`wire_local_triggers` makes the emulator deliver what AWS would hand the trigger function to an
SQS relay queue instead: the inbox bucket's ObjectCreated notifications (one per S3 trigger,
with its prefix/suffix filter) and the bus's events (one rule per events trigger with a
pattern). `relay_once` then hands each relayed message to the trigger handler, exactly as the
S3 notification or the EventBridge event it is. Schedules do not fire in the emulator; send
their event with `claude-jobs trigger event --schedule RULE` instead.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from claude_jobs.resources import TRIGGER_RETRY_ATTEMPTS
from claude_jobs.settings import Settings
from claude_jobs.triggers.config import TriggersConfig

from .runtime import ACCOUNT_ID, REGION

log = logging.getLogger("claude_jobs.local.triggers")

RELAY_QUEUE_SUFFIX = "trigger-relay"
Handler = Callable[[Any, Any], Any]


def _ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)


def wire_local_triggers(
    settings: Settings, config: TriggersConfig, *, prefix: str = "claude-jobs"
) -> str:
    """Create the relay queue and route the inbox bucket and the bus (both provisioned) to it;
    return its URL."""
    import boto3

    sqs = boto3.client("sqs")
    queue_url: str = sqs.create_queue(QueueName=f"{prefix}-{RELAY_QUEUE_SUFFIX}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    s3: Any = boto3.client("s3")
    routes: dict[str, list[dict[str, Any]]] = {}
    for trigger in config.s3:
        bucket = trigger.bucket or settings.inbox_bucket
        if not bucket:
            continue
        rules = [{"Name": "prefix", "Value": trigger.prefix}] if trigger.prefix else []
        if trigger.suffix:
            rules.append({"Name": "suffix", "Value": trigger.suffix})
        queue_config: dict[str, Any] = {
            "Id": trigger.name,
            "QueueArn": queue_arn,
            "Events": ["s3:ObjectCreated:*"],
        }
        if rules:
            queue_config["Filter"] = {"Key": {"FilterRules": rules}}
        routes.setdefault(bucket, []).append(queue_config)
    for bucket, queue_configs in routes.items():
        _ensure_bucket(s3, bucket)
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"QueueConfigurations": queue_configs},
        )

    if settings.event_bus_name:
        events = boto3.client("events")
        try:
            events.describe_event_bus(Name=settings.event_bus_name)
        except events.exceptions.ResourceNotFoundException:
            events.create_event_bus(Name=settings.event_bus_name)
        for event_trigger in config.events:
            pattern = event_trigger.event_pattern()
            if pattern is None:
                continue
            rule = f"{prefix}-trigger-{event_trigger.name}"
            events.put_rule(
                Name=rule, EventBusName=settings.event_bus_name, EventPattern=json.dumps(pattern)
            )
            events.put_targets(
                Rule=rule,
                EventBusName=settings.event_bus_name,
                Targets=[{"Id": "relay", "Arn": queue_arn}],
            )
    return queue_url


def as_delivered(event: Any) -> Any:
    """The event as AWS hands it to the function. The emulator's S3 notifications leave out
    the fields S3 fills from the request (who made it, from where, its request ids, the bucket
    owner), and its bus events may lack the account; they are filled in here with local values,
    so the function parses them with the same models as in AWS. Anything else passes
    unchanged."""
    if isinstance(event, dict) and "detail-type" in event:
        event.setdefault("version", "0")
        event.setdefault("account", ACCOUNT_ID)
        event.setdefault("region", REGION)
        event.setdefault("resources", [])
        return event
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return event
    for record in event["Records"]:
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            continue
        request_id = uuid.uuid4().hex[:16].upper()
        record.setdefault("userIdentity", {"principalId": f"AWS:{ACCOUNT_ID}"})
        record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        record.setdefault(
            "responseElements", {"x-amz-request-id": request_id, "x-amz-id-2": request_id}
        )
        bucket = (record.get("s3") or {}).get("bucket")
        if isinstance(bucket, dict):
            bucket.setdefault("ownerIdentity", {"principalId": ACCOUNT_ID})
    return event


def relay_once(
    sqs: Any,
    queue_url: str,
    handler: Handler,
    *,
    wait_seconds: int = 0,
    failure_queue_url: str | None = None,
    retry_attempts: int = TRIGGER_RETRY_ATTEMPTS,
    retry_delay_seconds: float = 1.0,
    function_name: str = "trigger",
) -> int:
    """Hand every relayed message to `handler`; return how many were settled.

    As Lambda does with a failed asynchronous invocation, a message whose handling raises is
    tried again (after `retry_delay_seconds`, then twice that; Lambda waits about a minute,
    then two) up to `retry_attempts` times; then Lambda's on-failure record (the event, the
    error) goes to `failure_queue_url` and the message is dropped, so that no event is retried
    forever and none holds up the others."""
    settled = 0
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["ApproximateReceiveCount"],
    ).get("Messages", [])
    for message in messages:
        try:
            event = as_delivered(json.loads(message["Body"]))
        except ValueError:
            event = {"unparseable_body": message["Body"]}
        invocations = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
        try:
            handler(event, None)
        except Exception as exc:
            if invocations <= retry_attempts:
                delay = retry_delay_seconds * 2 ** (invocations - 1)
                log.warning(
                    "the %s function failed (%s); retry %d in %.0f s",
                    function_name,
                    type(exc).__name__,
                    invocations,
                    delay,
                )
                sqs.change_message_visibility(
                    QueueUrl=queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=int(delay),
                )
                continue
            log.error(
                "the %s function failed %d times on an event; it goes to the on-failure "
                "destination",
                function_name,
                invocations,
            )
            if failure_queue_url:
                record = on_failure_record(event, exc, invocations, function_name)
                sqs.send_message(QueueUrl=failure_queue_url, MessageBody=json.dumps(record))
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        settled += 1
    return settled


def on_failure_record(
    event: Any, error: BaseException, invocations: int, function_name: str
) -> dict[str, Any]:
    """What Lambda sends an asynchronous invocation's on-failure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": invocations,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorMessage": str(error)[:1000],
            "errorType": type(error).__name__,
            "stackTrace": [],
        },
    }

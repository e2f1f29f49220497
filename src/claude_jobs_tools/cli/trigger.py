"""`claude-jobs trigger s3 | event`: start jobs the way S3 and EventBridge do.

`s3` uploads a file to the inbox bucket (`INBOX_BUCKET`); `event` puts an event on the bus
(`EVENT_BUS_NAME`). With `AWS_ENDPOINT_URL` pointing at the local stack's emulator, its trigger
relay hands them to the trigger function; in AWS, the bucket notification and the bus's rules do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="trigger",
    help="Start jobs through the event triggers: an S3 upload or an EventBridge event.",
    no_args_is_help=True,
)


def _settings() -> Any:
    from claude_jobs.settings import Settings

    return Settings.from_env()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command("s3")
def s3(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    key: Annotated[
        str | None, typer.Option("--key", help="Object key; default inbox/<file name>.")
    ] = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="Default: the inbox bucket (INBOX_BUCKET).")
    ] = None,
) -> None:
    """Upload FILE to the inbox bucket; an S3 trigger on its key turns it into a job."""
    import boto3

    target = bucket or _settings().inbox_bucket
    if not target:
        raise _fail("no bucket: set INBOX_BUCKET or pass --bucket")
    object_key = key or f"inbox/{file.name}"
    response = boto3.client("s3").put_object(Bucket=target, Key=object_key, Body=file.read_bytes())
    typer.echo(
        json.dumps(
            {
                "bucket": target,
                "key": object_key,
                "etag": str(response.get("ETag", "")).strip('"'),
                "version_id": response.get("VersionId"),
            }
        )
    )


@app.command("event")
def event(
    detail_type: Annotated[
        str, typer.Option("--detail-type", help="e.g. 'Run Task'.")
    ] = "Run Task",
    detail: Annotated[
        str, typer.Option("--detail", help="The event's detail, a JSON object.")
    ] = "{}",
    source: Annotated[str, typer.Option("--source")] = "claude-jobs.trigger",
    bus: Annotated[
        str | None, typer.Option("--bus", help="Default: the bus (EVENT_BUS_NAME).")
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            "--schedule",
            help="Print the event a schedule rule of this name would send, for the trigger "
            "function (schedules do not fire in the emulator), instead of putting one.",
        ),
    ] = None,
) -> None:
    """Put an event on the bus; an events trigger matching it turns it into a job."""
    try:
        parsed = json.loads(detail)
    except ValueError as exc:
        raise _fail(f"--detail is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise _fail("--detail must be a JSON object")
    if schedule is not None:
        typer.echo(json.dumps(scheduled_event(schedule)))
        return
    import boto3

    bus_name = bus or _settings().event_bus_name
    if not bus_name:
        raise _fail("no bus: set EVENT_BUS_NAME or pass --bus")
    response = boto3.client("events").put_events(
        Entries=[
            {
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps(parsed),
                "EventBusName": bus_name,
            }
        ]
    )
    entry = response["Entries"][0]
    if response.get("FailedEntryCount"):
        raise _fail(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
    typer.echo(json.dumps({"event_id": entry.get("EventId"), "bus": bus_name}))


def scheduled_event(
    rule: str, region: str = "us-east-1", account: str = "123456789012"
) -> dict[str, Any]:
    """The event EventBridge sends when schedule rule `rule` fires now."""
    import uuid

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule}"],
        "detail": {},
    }

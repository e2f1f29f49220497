"""`claude-jobs migrate …`: one-off data changes that a new version's deploy may call for.

They work on the tables named by the usual settings (`JOBS_TABLE`, see
`Settings.from_env()`), with the usual AWS credentials and region; `AWS_ENDPOINT_URL` points
them at an emulator. Each is safe to run again and while the service runs.
"""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="migrate",
    help="One-off data changes a deploy may call for (each safe to run again).",
    no_args_is_help=True,
)
errors = Console(stderr=True)


@app.command("open-index")
def open_index() -> None:
    """Give the unfinished-jobs index's key to the jobs and usage counters written before the
    index existed: run once after deploying it over a table with jobs in flight, so that the
    reconciler sees them before their next change (docs/data.md)."""
    import boto3

    from claude_jobs.adapters.reconcile_table import backfill_open_keys
    from claude_jobs.settings import Settings

    table = Settings.from_env().jobs_table
    done = backfill_open_keys(boto3.client("dynamodb"), table)
    errors.print(
        f"{table}: {done.examined} items examined, {done.given} given the key, "
        f"{done.skipped} changed meanwhile (left alone)"
    )

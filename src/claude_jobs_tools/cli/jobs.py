"""Client commands: `claude-jobs submit | status | wait | events | list | cancel`.

They talk to the deployment at `CLAUDE_JOBS_URL` with the key in `CLAUDE_JOBS_API_KEY` (or
`--url` / `--api-key`). Exit codes: 0 the job succeeded (or the request was accepted), 1 the
job ended without succeeding, 2 a usage or API error, 3 `--timeout` passed before the job
finished, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from claude_jobs_client import (
    API_KEY_ENV,
    URL_ENV,
    ApiConnectionError,
    ApiError,
    Client,
    WaitTimeoutError,
    is_terminal,
)

from .options import with_job_options
from .output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_WAIT_TIMEOUT,
    err,
    event_text,
    exit_code,
    out,
    print_job,
    print_json,
    print_outcome,
    status_text,
    wait_with_progress,
)

#: `claude-jobs submit | status | wait | events | list | cancel` (merged into the root command).
app = typer.Typer()

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar=URL_ENV, help="Base URL of the API.", show_default=False),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar=API_KEY_ENV, help="API key.", show_default=False, show_envvar=True
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
JobIdArgument = Annotated[str, typer.Argument(help="The job's id.")]


# ---------------------------------------------------------------- helpers


@contextmanager
def _client(url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client whose API and connection errors end the command with exit code 2."""
    try:
        with Client(url, api_key) as client:
            yield client
    except ApiError as exc:
        err.print(f"[red]error[/]: {exc.status} {exc.title}", markup=True)
        if exc.detail:
            err.print(exc.detail, markup=False)
        for item in exc.errors:
            loc = ".".join(str(part) for part in item.get("loc", []))
            err.print(f"  {loc}: {item.get('msg', '')}", markup=False)
        if exc.status == 401 and not api_key:
            err.print(f"Set {API_KEY_ENV} (or pass --api-key).", markup=False)
        raise typer.Exit(EXIT_ERROR) from None
    except ApiConnectionError as exc:
        err.print(f"[red]error[/]: {exc}", markup=True)
        if not url:
            err.print(f"Set {URL_ENV} to the API's base URL.", markup=False)
        raise typer.Exit(EXIT_ERROR) from None


def _parse_metadata(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        metadata[key] = value
    return metadata


def _read_prompt(prompt: str) -> str:
    if prompt == "-":
        return sys.stdin.read()
    return prompt


# ---------------------------------------------------------------- commands


@app.command(rich_help_panel="Jobs")
@with_job_options
def submit(
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from stdin.")],
    options: dict[str, Any],
    system_prompt: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="KEY=VALUE; repeatable.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Same key + same body within 24 h returns the first job. Default: a key of "
            "this command's own, so a gateway error (502/503/504) is asked again safely."
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            help="Continue this session (an earlier job's session_id) with the prompt.",
        ),
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option(
            "--file",
            help="A file to upload and place in the job's working directory under its name; "
            "repeatable.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the result, showing live progress.")
    ] = False,
    wait_timeout: Annotated[
        float | None,
        typer.Option(help="With --wait: give up waiting after this many seconds (exit 3)."),
    ] = None,
    json_output: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Submit a job. Prints its id; with --wait, its result (exit 0 only if it succeeded)."""
    with _client(url, api_key) as client:
        inputs = _upload_files(client, files or [], quiet or json_output)
        accepted = client.submit(
            _read_prompt(prompt),
            **options,
            system_prompt=system_prompt,
            metadata=_parse_metadata(metadata),
            # a key of its own: the client asks again on a gateway error, and gets the one job
            idempotency_key=idempotency_key or f"cli-{uuid.uuid4()}",
            session_id=session,
            inputs=inputs,
        )
        job_id = str(accepted["job_id"])
        if not wait:
            if json_output:
                print_json(accepted)
            else:
                print(job_id)
                if not quiet:
                    err.print(
                        f"{accepted.get('status')}; follow it with: claude-jobs wait {job_id}",
                        markup=False,
                    )
            return
        if not json_output and not quiet:
            err.print(f"submitted job {job_id}", markup=False)
        job = wait_with_progress(client, job_id, wait_timeout, quiet or json_output)
        if json_output:
            print_json(job)
        else:
            print_outcome(client, job)
    raise typer.Exit(exit_code(job))


@app.command(rich_help_panel="Jobs")
def status(
    job_id: JobIdArgument,
    json_output: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Show a job. Exit 1 if it ended without succeeding."""
    with _client(url, api_key) as client:
        job = client.get(job_id)
        if json_output:
            print_json(job)
        else:
            print_job(client, job)
    raise typer.Exit(exit_code(job))


@app.command(name="wait", rich_help_panel="Jobs")
def wait_command(
    job_id: JobIdArgument,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Give up after this many seconds (exit 3)."),
    ] = None,
    json_output: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Wait for a job to finish (long-polling) and print its result."""
    with _client(url, api_key) as client:
        job = wait_with_progress(client, job_id, timeout, quiet or json_output)
        if json_output:
            print_json(job)
        else:
            print_outcome(client, job)
    raise typer.Exit(exit_code(job))


@app.command(name="events", rich_help_panel="Jobs")
def events_command(
    job_id: JobIdArgument,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep showing new events until the job is done."),
    ] = False,
    after: Annotated[
        str | None,
        typer.Option(help="Only events after this cursor (a `next_cursor`, or a seq)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="With --follow: give up after this many seconds (exit 3)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per event and line (JSON Lines).")
    ] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Print a job's progress events: status changes, tool calls, text, usage."""
    with _client(url, api_key) as client:
        try:
            for event in client.iter_events(job_id, after=after, follow=follow, timeout=timeout):
                if json_output:
                    print(json.dumps(event, ensure_ascii=False, separators=(",", ":")), flush=True)
                    continue
                line = event_text(event, full=True)
                if line is not None:
                    at = str(event.get("at", ""))[11:19]
                    out.print(Text.assemble((f"{event.get('seq'):>4} {at} ", "dim"), line))
        except WaitTimeoutError:
            err.print(f"job {job_id} is not done after {timeout:g}s", markup=False)
            raise typer.Exit(EXIT_WAIT_TIMEOUT) from None
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(EXIT_OK)


@app.command(name="list", rich_help_panel="Jobs")
def list_command(
    limit: Annotated[int | None, typer.Option(help="Page size, 1-100 (API default 20).")] = None,
    next_token: Annotated[str | None, typer.Option(help="Token of the next page.")] = None,
    json_output: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """List your jobs, newest first."""
    with _client(url, api_key) as client:
        page = client.list(limit=limit, next_token=next_token)
    if json_output:
        print_json(page)
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("JOB ID", no_wrap=True, min_width=36)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("TURNS", justify="right")
    table.add_column("COST", justify="right")
    for job in page.get("items", []):
        usage = job.get("usage") or {}
        created = str(job.get("created_at", ""))
        table.add_row(
            str(job.get("job_id")),
            status_text(str(job.get("status"))),
            created[:19].replace("T", " "),
            str(usage.get("num_turns", "")) if usage else "",
            f"${float(usage.get('total_cost_usd') or 0):.4f}" if usage else "",
        )
    if page.get("items"):
        out.print(table)
    else:
        err.print("no jobs", markup=False)
    if page.get("next_token"):
        err.print(f"more: claude-jobs list --next-token {page['next_token']}", markup=False)


@app.command(rich_help_panel="Jobs")
def cancel(
    job_id: JobIdArgument,
    json_output: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Cancel a job: a queued one at once, a running one within seconds."""
    with _client(url, api_key) as client:
        job = client.cancel(job_id)
    if json_output:
        print_json(job)
    else:
        print(f"{job.get('job_id', job_id)} {job.get('status', 'cancel requested')}")


def _upload_files(client: Client, files: list[Path], quiet: bool) -> list[str]:
    """Files: upload each (its name in the job's working directory is its own) → upload ids."""
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise typer.BadParameter("two files share a name", param_hint="--file")
    ids = []
    for path in files:
        ids.append(client.upload(path))
        if not quiet:
            err.print(f"uploaded {path.name} ({path.stat().st_size:,} bytes)", markup=False)
    return ids


@app.command(rich_help_panel="Jobs")
def download(
    job_id: JobIdArgument,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write them (out/a.txt → DIR/a.txt).")
    ] = Path("."),
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Download a finished job's artifacts (the files its agent left under out/)."""
    with _client(url, api_key) as client:
        job = client.get(job_id)
        if not is_terminal(job):
            err.print(f"job {job_id} is still {job.get('status')}", markup=False)
            raise typer.Exit(EXIT_ERROR)
        try:
            written = client.download_artifacts(job, directory)
        except ValueError as exc:
            err.print(f"[red]error[/]: {exc}", markup=True)
            raise typer.Exit(EXIT_ERROR) from None
    for path in written:
        print(path)
    for note in job.get("artifact_notes") or []:
        err.print(f"artifacts: {note}", markup=False)
    if not written:
        err.print("no artifacts", markup=False)


# ---------------------------------------------------------------- sessions

sessions_app = typer.Typer(
    name="sessions",
    help="Sessions: the conversations jobs continue (submit --session ID).",
    no_args_is_help=True,
)
SessionIdArgument = Annotated[str, typer.Argument(help="A session id (a job's session_id).")]


@sessions_app.command("show")
def session_show(
    session_id: SessionIdArgument,
    json_output: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Show a session: when it started, when it was last continued, and its jobs."""
    with _client(url, api_key) as client:
        session = client.get_session(session_id)
    if json_output:
        print_json(session)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    table.add_row("session", str(session.get("session_id")))
    table.add_row("created", str(session.get("created_at")))
    table.add_row("updated", str(session.get("updated_at")))
    for i, job_id in enumerate(session.get("job_ids") or []):
        table.add_row("jobs" if i == 0 else "", str(job_id))
    out.print(table)


@sessions_app.command("delete")
def session_delete(
    session_id: SessionIdArgument,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Delete a session and its transcript: it can no longer be continued."""
    with _client(url, api_key) as client:
        client.delete_session(session_id)
    print(f"{session_id} deleted")

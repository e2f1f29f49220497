"""Client commands: `claude-jobs submit | status | wait | events | list | cancel`.

They talk to the deployment at `CLAUDE_JOBS_URL` with the key in `CLAUDE_JOBS_API_KEY` (or
`--url` / `--api-key`). Exit codes: 0 the job succeeded (or the request was accepted), 1 the
job ended without succeeding, 2 a usage or API error, 3 `--timeout` passed before the job
finished, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from claude_jobs_client import (
    API_KEY_ENV,
    URL_ENV,
    ApiConnectionError,
    ApiError,
    Client,
    Event,
    Job,
    WaitTimeoutError,
    is_terminal,
)

#: `claude-jobs submit | status | wait | events | list | cancel` (merged into the root command).
app = typer.Typer()

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_ERROR = 2
EXIT_WAIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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

_STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "magenta",
}


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


def _print_json(data: Any) -> None:
    # Plain print: rich would wrap or colour it, and scripts read this.
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _exit_code(job: Job) -> int:
    if not is_terminal(job) or job.get("status") == "succeeded":
        return EXIT_OK
    return EXIT_JOB_FAILED


def _status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _usage_line(job: Job) -> str:
    usage = job.get("usage") or {}
    parts = [str(job.get("status"))]
    if usage:
        parts.append(f"{usage.get('num_turns', 0)} turn(s)")
        parts.append(
            f"{usage.get('input_tokens', 0):,} in / {usage.get('output_tokens', 0):,} out tokens"
        )
        parts.append(f"${float(usage.get('total_cost_usd') or 0):.4f}")
        parts.append(f"{int(usage.get('duration_ms') or 0) / 1000:.1f}s")
    return " · ".join(parts)


def _print_outcome(client: Client, job: Job) -> None:
    """The result text on stdout, then a usage summary; an error on stderr."""
    text = client.download_result(job)
    if text is not None:
        print(text)
    error = job.get("error")
    if error:
        err.print(
            f"[red]{job.get('status')}[/]: {error.get('code', '')}: {error.get('message', '')}",
            markup=True,
        )
    out.print(Text(_usage_line(job), style="dim"))


class _LiveStatus:
    """`⠋ job 1234… running · 12s`, re-rendered by rich's Live while a long-poll blocks."""

    def __init__(self, job_id: str, started: float) -> None:
        self.job_id = job_id
        self.status = "queued"
        self.started = started
        self.cost: str | None = None  # the running cost and tokens, from `usage` events

    def __rich__(self) -> RenderableType:
        elapsed = int(time.monotonic() - self.started)
        line = Text.assemble(
            ("job ", "dim"),
            (self.job_id, "bold"),
            " ",
            _status_text(self.status),
            (f" · {elapsed // 60}:{elapsed % 60:02d}", "dim"),
            (f" · {self.cost}" if self.cost else "", "dim"),
        )
        return Spinner("dots", text=line)


#: How much of a tool's input and of a text a progress line shows.
_SHOWN_INPUT_CHARS = 160
_SHOWN_TEXT_CHARS = 600


def _cost_text(event: Event) -> str:
    tokens = int(event.get("input_tokens") or 0) + int(event.get("output_tokens") or 0)
    return f"${float(event.get('total_cost_usd') or 0):.4f} · {tokens:,} tokens"


def _event_text(event: Event, *, full: bool = False) -> Text | None:
    """One progress event as a line (None: nothing to show for it)."""
    kind = event.get("type")
    if kind == "status":
        status = str(event.get("status"))
        segment = event.get("segment")
        return Text.assemble(
            ("● ", _STATUS_STYLE.get(status, "")),
            _status_text(status),
            (f" (segment {segment})" if segment is not None else "", "dim"),
        )
    if kind == "tool_use":
        shown = str(event.get("input") or "")
        if not full and len(shown) > _SHOWN_INPUT_CHARS:
            shown = shown[: _SHOWN_INPUT_CHARS - 1] + "…"
        return Text.assemble(
            ("→ ", "cyan"), (str(event.get("tool")), "bold cyan"), " ", (shown, "dim")
        )
    if kind == "tool_result":
        failed = bool(event.get("is_error"))
        return Text.assemble(
            ("✗ " if failed else "✓ ", "red" if failed else "green"),
            (str(event.get("tool")), "dim"),
            (" failed" if failed else "", "red"),
        )
    if kind == "text":
        text = str(event.get("text") or "").strip()
        if not full and len(text) > _SHOWN_TEXT_CHARS:
            text = text[: _SHOWN_TEXT_CHARS - 1] + "…"
        elif event.get("truncated"):
            text += " …"
        return Text(text)
    if kind == "usage":
        return Text(_cost_text(event), style="dim")
    return None


def _follow_events(
    client: Client,
    job_id: str,
    timeout: float | None,
    show: Any,
    live_status: _LiveStatus | None,
) -> None:
    """Show the job's progress events as they come, until it is done."""
    for event in client.iter_events(job_id, follow=True, timeout=timeout):
        if live_status is not None:
            if event.get("type") == "status":
                live_status.status = str(event.get("status"))
            elif event.get("type") == "usage":
                live_status.cost = _cost_text(event)
        if event.get("type") == "usage" and live_status is not None:
            continue  # the running cost shows in the status line
        line = _event_text(event)
        if line is not None:
            show(line)


def _wait_with_progress(client: Client, job_id: str, timeout: float | None, quiet: bool) -> Job:
    """Follow the job to its end, showing its progress events (tool calls with their input,
    text as it arrives, status changes) on stderr, with a live status line of the elapsed time
    and the running cost; then return the job."""
    from rich.live import Live

    started = time.monotonic()
    live_status = _LiveStatus(job_id, started)
    deadline = None if timeout is None else started + timeout

    def left() -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def plain(line: Text) -> None:
        err.print(line.plain, markup=False, highlight=False)

    try:
        if quiet:
            return client.wait(job_id, timeout=timeout)
        try:
            if err.is_terminal:
                with Live(live_status, console=err, refresh_per_second=8, transient=True) as live:
                    _follow_events(client, job_id, timeout, live.console.print, live_status)
            else:
                _follow_events(client, job_id, timeout, plain, None)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # A deployment without progress events (or no such job: the wait says so).
            return client.wait(job_id, timeout=left())
        # Done: every event shown. The job's answer carries the result.
        return client.wait(job_id, timeout=left())
    except WaitTimeoutError:
        job = client.get(job_id)
        err.print(
            f"job {job_id} is still {job.get('status')} after {timeout:g}s; "
            f"resume with: claude-jobs wait {job_id}",
            markup=False,
        )
        raise typer.Exit(EXIT_WAIT_TIMEOUT) from None
    except KeyboardInterrupt:
        err.print(
            f"\nstopped waiting; job {job_id} goes on. Resume with: claude-jobs wait {job_id}",
            markup=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _split_tools(tools: list[str] | None) -> list[str] | None:
    """`--tools Read,Grep` and `--tools Read --tools Grep` alike; `--tools ""` = no tools."""
    if tools is None:
        return None
    return [t.strip() for item in tools for t in item.split(",") if t.strip()]


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
def submit(
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from stdin.")],
    tools: Annotated[
        list[str] | None,
        typer.Option(
            "--tools",
            help="Tools the agent may use: --tools Read,Grep or repeat the option; "
            "--tools '' for none. Default: the API's (Read, Glob, Grep).",
            show_default=False,
        ),
    ] = None,
    max_turns: Annotated[int | None, typer.Option(help="1-100 (API default 25).")] = None,
    timeout: Annotated[
        int | None,
        typer.Option(
            "--timeout",
            help="Job timeout in seconds, 10 to the deployment's max_job_seconds (default "
            "14,400; API default 300). Longer than one worker invocation, a job runs in "
            "segments.",
        ),
    ] = None,
    system_prompt: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_budget_usd: Annotated[float | None, typer.Option(help="Spending cap for the job.")] = None,
    model: Annotated[str | None, typer.Option(help="Model; default: the deployment's.")] = None,
    output_schema: Annotated[
        str | None,
        typer.Option(help="A JSON Schema (inline JSON, or @file.json) for a structured result."),
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="KEY=VALUE; repeatable.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Same key + same body within 24 h returns the first job.")
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            help="Continue this session (an earlier job's session_id) with the prompt.",
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
    schema = None
    if output_schema is not None:
        raw = output_schema
        if raw.startswith("@"):
            with open(raw[1:], encoding="utf-8") as handle:
                raw = handle.read()
        try:
            schema = json.loads(raw)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--output-schema") from None
    with _client(url, api_key) as client:
        accepted = client.submit(
            _read_prompt(prompt),
            allowed_tools=_split_tools(tools),
            max_turns=max_turns,
            timeout_seconds=timeout,
            system_prompt=system_prompt,
            max_budget_usd=max_budget_usd,
            model=model,
            output_schema=schema,
            metadata=_parse_metadata(metadata),
            idempotency_key=idempotency_key,
            session_id=session,
        )
        job_id = str(accepted["job_id"])
        if not wait:
            if json_output:
                _print_json(accepted)
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
        job = _wait_with_progress(client, job_id, wait_timeout, quiet or json_output)
        if json_output:
            _print_json(job)
        else:
            _print_outcome(client, job)
    raise typer.Exit(_exit_code(job))


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
            _print_json(job)
        else:
            _print_job(client, job)
    raise typer.Exit(_exit_code(job))


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
        job = _wait_with_progress(client, job_id, timeout, quiet or json_output)
        if json_output:
            _print_json(job)
        else:
            _print_outcome(client, job)
    raise typer.Exit(_exit_code(job))


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
                line = _event_text(event, full=True)
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
        _print_json(page)
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
            _status_text(str(job.get("status"))),
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
        _print_json(job)
    else:
        print(f"{job.get('job_id', job_id)} {job.get('status', 'cancel requested')}")


def _print_job(client: Client, job: Job) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    table.add_row("job", str(job.get("job_id")))
    table.add_row("status", _status_text(str(job.get("status"))))
    for field in ("created_at", "started_at", "finished_at"):
        if job.get(field):
            table.add_row(field.replace("_at", ""), str(job[field]))
    table.add_row("attempts", str(job.get("attempts", 0)))
    if job.get("session_id"):
        table.add_row("session", str(job["session_id"]))
    if int(job.get("segments") or 0) > 1:
        table.add_row("segments", str(job["segments"]))
    request = job.get("request") or {}
    if request:
        tools = request.get("allowed_tools")
        table.add_row("tools", ", ".join(tools) if tools else "(none)")
        table.add_row(
            "limits", f"{request.get('max_turns')} turns, {request.get('timeout_seconds')}s"
        )
    if job.get("metadata"):
        table.add_row("metadata", json.dumps(job["metadata"]))
    if job.get("usage"):
        table.add_row("usage", _usage_line(job).split(" · ", 1)[-1])
    error = job.get("error")
    if error:
        table.add_row("error", Text(f"{error.get('code')}: {error.get('message')}", style="red"))
    out.print(table)
    if is_terminal(job) and job.get("result"):
        text = client.download_result(job)
        if text is not None:
            out.print(Text("result", style="dim"))
            print(text)


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
        _print_json(session)
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

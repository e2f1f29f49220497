"""How the job commands show things: jobs, results, progress events, a live status line."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from claude_jobs_client import (
    ApiError,
    Client,
    Event,
    Job,
    WaitTimeoutError,
    is_terminal,
    is_waiting,
)

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_ERROR = 2
EXIT_WAIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "awaiting_approval": "bold yellow",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "magenta",
}


def print_json(data: Any) -> None:
    # Plain print: rich would wrap or colour it, and scripts read this.
    print(json.dumps(data, indent=2, ensure_ascii=False))


def exit_code(job: Job) -> int:
    if not is_terminal(job) or job.get("status") == "succeeded":
        return EXIT_OK
    return EXIT_JOB_FAILED


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def usage_line(job: Job) -> str:
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


def print_outcome(client: Client, job: Job) -> None:
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
    out.print(Text(usage_line(job), style="dim"))
    print_artifacts(job)


class LiveStatus:
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
            status_text(self.status),
            (f" · {elapsed // 60}:{elapsed % 60:02d}", "dim"),
            (f" · {self.cost}" if self.cost else "", "dim"),
        )
        return Spinner("dots", text=line)


#: How much of a tool's input and of a text a progress line shows.
SHOWN_INPUT_CHARS = 160
SHOWN_TEXT_CHARS = 600


def cost_text(event: Event) -> str:
    tokens = int(event.get("input_tokens") or 0) + int(event.get("output_tokens") or 0)
    return f"${float(event.get('total_cost_usd') or 0):.4f} · {tokens:,} tokens"


def event_text(event: Event, *, full: bool = False) -> Text | None:
    """One progress event as a line (None: nothing to show for it)."""
    kind = event.get("type")
    if kind == "status":
        status = str(event.get("status"))
        segment = event.get("segment")
        return Text.assemble(
            ("● ", STATUS_STYLE.get(status, "")),
            status_text(status),
            (f" (segment {segment})" if segment is not None else "", "dim"),
        )
    if kind == "tool_use":
        shown = str(event.get("input") or "")
        if not full and len(shown) > SHOWN_INPUT_CHARS:
            shown = shown[: SHOWN_INPUT_CHARS - 1] + "…"
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
        if not full and len(text) > SHOWN_TEXT_CHARS:
            text = text[: SHOWN_TEXT_CHARS - 1] + "…"
        elif event.get("truncated"):
            text += " …"
        return Text(text)
    if kind == "usage":
        return Text(cost_text(event), style="dim")
    return None


def waiting_lines(job: Job) -> list[Text]:
    """What a job waiting for a decision waits on, and the commands that answer it."""
    pending = job.get("pending_approval") or {}
    job_id = str(job.get("job_id"))
    tool = str(pending.get("tool", "?"))
    lines = [
        Text.assemble(("waiting for approval: ", "bold yellow"), (tool, "bold")),
        Text(f"  input:   {pending.get('input', '')}"),
    ]
    if pending.get("rule"):
        lines.append(Text(f"  rule:    {pending['rule']}"))
    lines.append(Text(f"  expires: {pending.get('expires_at', '?')}"))
    if tool == "AskUserQuestion":
        lines.append(Text(f"  answer:  claude-jobs approve {job_id} --answer 'QUESTION=ANSWER'"))
    else:
        lines.append(Text(f"  allow:   claude-jobs approve {job_id}"))
    lines.append(Text(f"  deny:    claude-jobs approve {job_id} --deny --message '…'"))
    return lines


class WaitingNotice:
    """Shows each approval a job waits on once (the job may wait again later)."""

    def __init__(self, show: Any) -> None:
        self._show = show
        self._shown: set[str] = set()

    def __call__(self, job: Job) -> None:
        pending = job.get("pending_approval") or {}
        approval_id = str(pending.get("approval_id", ""))
        if is_waiting(job) and approval_id and approval_id not in self._shown:
            self._shown.add(approval_id)
            for line in waiting_lines(job):
                self._show(line)


def _starts_waiting(event: Event) -> bool:
    return event.get("type") == "approval_requested" or (
        event.get("type") == "status" and event.get("status") == "awaiting_approval"
    )


def follow_events(
    client: Client,
    job_id: str,
    timeout: float | None,
    show: Any,
    live_status: LiveStatus | None,
) -> None:
    """Show the job's progress events as they come, until it is done; when it starts waiting
    for a decision, what it waits on and how to answer (it keeps following)."""
    notice = WaitingNotice(show)
    for event in client.iter_events(job_id, follow=True, timeout=timeout):
        if _starts_waiting(event):
            notice(client.get(job_id))
        if live_status is not None:
            if event.get("type") == "status":
                live_status.status = str(event.get("status"))
            elif event.get("type") == "usage":
                live_status.cost = cost_text(event)
        if event.get("type") == "usage" and live_status is not None:
            continue  # the running cost shows in the status line
        line = event_text(event)
        if line is not None:
            show(line)


def wait_with_progress(client: Client, job_id: str, timeout: float | None, quiet: bool) -> Job:
    """Follow the job to its end, showing its progress events (tool calls with their input,
    text as it arrives, status changes) on stderr, with a live status line of the elapsed time
    and the running cost; then return the job."""
    from rich.live import Live

    started = time.monotonic()
    live_status = LiveStatus(job_id, started)
    deadline = None if timeout is None else started + timeout

    def left() -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def plain(line: Text) -> None:
        err.print(line.plain, markup=False, highlight=False)

    try:
        if quiet:
            return client.wait(job_id, timeout=timeout, on_update=WaitingNotice(plain))
        try:
            if err.is_terminal:
                with Live(live_status, console=err, refresh_per_second=8, transient=True) as live:
                    follow_events(client, job_id, timeout, live.console.print, live_status)
            else:
                follow_events(client, job_id, timeout, plain, None)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # A deployment without progress events (or no such job: the wait says so).
            return client.wait(job_id, timeout=left(), on_update=WaitingNotice(plain))
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


def print_artifacts(job: Job) -> None:
    """Files: what the agent left under out/ (on stderr: stdout is the result)."""
    for artifact in job.get("artifacts") or []:
        err.print(
            f"artifact {artifact.get('path')} ({artifact.get('size_bytes', 0):,} bytes)",
            markup=False,
        )
    for note in job.get("artifact_notes") or []:
        err.print(f"artifacts: {note}", markup=False)
    if job.get("artifacts"):
        err.print(f"download them with: claude-jobs download {job.get('job_id')}", markup=False)
    # Repositories: the pull request the worker opened, or why none was.
    pull = job.get("pull_request")
    if isinstance(pull, dict):
        err.print(
            f"pull request #{pull.get('number')} {pull.get('url')} (branch {pull.get('branch')})",
            markup=False,
        )
    elif job.get("pull_request_skipped"):
        err.print(f"no pull request: {job.get('pull_request_skipped')}", markup=False)


def print_job(client: Client, job: Job) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    table.add_row("job", str(job.get("job_id")))
    table.add_row("status", status_text(str(job.get("status"))))
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
        table.add_row("usage", usage_line(job).split(" · ", 1)[-1])
    error = job.get("error")
    if error:
        table.add_row("error", Text(f"{error.get('code')}: {error.get('message')}", style="red"))
    out.print(table)
    if is_waiting(job):
        for line in waiting_lines(job):
            out.print(line)
    if is_terminal(job) and job.get("result"):
        text = client.download_result(job)
        if text is not None:
            out.print(Text("result", style="dim"))
            print(text)
    print_artifacts(job)

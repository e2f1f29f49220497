"""Approval commands: `claude-jobs approvals` (what waits for a decision) and
`claude-jobs approve JOB_ID [--deny] [--message …] [--answer QUESTION=ANSWER …]`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from claude_jobs_client import is_waiting

from .jobs import JobIdArgument, JsonOption, KeyOption, UrlOption, _client
from .output import EXIT_ERROR, err, out, print_json, status_text

#: `claude-jobs approvals | approve` (merged into the root command).
app = typer.Typer()

#: How much of a call's input the table shows.
INPUT_CHARS = 200


@app.command(name="approvals", rich_help_panel="Approvals")
def approvals_command(
    limit: Annotated[int | None, typer.Option(help="Page size, 1-100 (API default 20).")] = None,
    next_token: Annotated[str | None, typer.Option(help="Token of the next page.")] = None,
    json_output: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """List your jobs' calls that wait for a decision, oldest first."""
    with _client(url, api_key) as client:
        page = client.approvals(limit=limit, next_token=next_token)
    if json_output:
        print_json(page)
        return
    for item in page.get("items", []):
        pending = item.get("pending_approval") or {}
        text = str(pending.get("input", ""))
        rule = f"  rule {pending['rule']}" if pending.get("rule") else ""
        out.print(
            Text.assemble(
                (str(item.get("job_id")), "bold"),
                "  ",
                (str(pending.get("tool", "")), "yellow"),
                rule,
                (f"  expires {_when(pending.get('expires_at'))}", "dim"),
            )
        )
        out.print(
            Text("  " + (text if len(text) <= INPUT_CHARS else text[: INPUT_CHARS - 1] + "…"))
        )
    if page.get("items"):
        err.print("answer with: claude-jobs approve JOB_ID [--deny --message …]", markup=False)
    else:
        err.print("nothing waits for a decision", markup=False)
    if page.get("next_token"):
        err.print(f"more: claude-jobs approvals --next-token {page['next_token']}", markup=False)


@app.command(rich_help_panel="Approvals")
def approve(
    job_id: JobIdArgument,
    deny: Annotated[bool, typer.Option("--deny", help="Deny the call (it never runs).")] = False,
    message: Annotated[
        str | None,
        typer.Option("--message", help="Shown to the agent with a denial."),
    ] = None,
    answers: Annotated[
        list[str] | None,
        typer.Option(
            "--answer",
            help="QUESTION=ANSWER, for an AskUserQuestion call; repeatable.",
        ),
    ] = None,
    json_output: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Decide the call the job waits on: allow it (the default) or --deny it. The job is
    queued again and goes on."""
    parsed = _parse_answers(answers)
    with _client(url, api_key) as client:
        job = client.get(job_id)
        pending = job.get("pending_approval")
        if not is_waiting(job) or not pending:
            err.print(
                f"job {job_id} is {job.get('status')}: nothing waits for a decision",
                markup=False,
            )
            raise typer.Exit(EXIT_ERROR)
        decided = client.decide(
            job_id,
            str(pending["approval_id"]),
            "deny" if deny else "allow",
            message=message,
            answers=parsed,
        )
    if json_output:
        print_json(decided)
        return
    verb = "denied" if deny else "allowed"
    out.print(
        f"{job_id} ",
        status_text(str(decided.get("status"))),
        f" ({verb} {pending.get('tool')})",
        sep="",
    )


def _parse_answers(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    parsed: dict[str, str] = {}
    for pair in pairs:
        question, sep, answer = pair.partition("=")
        if not sep or not question:
            raise typer.BadParameter(f"{pair!r} is not QUESTION=ANSWER", param_hint="--answer")
        parsed[question] = answer
    return parsed


def _when(value: object) -> str:
    return str(value or "")[:19].replace("T", " ")

"""`claude-jobs dev`: the whole service on this machine, no AWS account needed."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from enum import StrEnum
from types import FrameType
from typing import Annotated

import typer

READY_TIMEOUT_SECONDS = 60


class Provider(StrEnum):
    """Where the models run."""

    anthropic = "anthropic"
    bedrock = "bedrock"


#: `claude-jobs dev` (merged into the root command).
app = typer.Typer()


@app.command(rich_help_panel="Local stack")
def dev(
    host: Annotated[str, typer.Option(help="Interface the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API; 0 picks a free one.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker threads consuming the queue.", min=1)] = 2,
    log_level: Annotated[
        str | None,
        typer.Option(help="Level of the functions' logs (POWERTOOLS_LOG_LEVEL); default WARNING."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No request log.")] = False,
    provider: Annotated[
        Provider,
        typer.Option(
            help="Model provider: anthropic, or bedrock (no Anthropic key; Bedrock runtime from "
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME, else an offline stand-in).",
        ),
    ] = Provider.anthropic,
    invocation_seconds: Annotated[
        int,
        typer.Option(
            help="Length of an emulated worker invocation (its Lambda timeout): a longer job "
            "runs in segments of about this length.",
            min=10,
            max=900,
        ),
    ] = 900,
    githost: Annotated[
        bool,
        typer.Option(
            "--githost",
            help="Run the local Git host stand-in (smart-HTTP Git and GitHub's REST subset) "
            "with a demo repository, demo/hello, and a GitHub App every tenant is connected "
            "through: try repository in, pull request out, and GitHub events, with no account.",
        ),
    ] = False,
) -> None:
    """Run the API, the queue, the workers and an AWS emulator (moto) in one process.

    ANTHROPIC_API_KEY goes into the emulated Secrets Manager (without it an offline stand-in
    model gives canned answers); ANTHROPIC_BASE_URL sets the upstream;
    CLAUDE_JOBS_DEV_KEYS="tenant:key,…" registers API keys (otherwise one is generated).
    Ready when GET /v1/health answers; Ctrl-C stops it.
    """
    from ..local.stack import DEV_KEYS_ENV, LocalStack, StackConfig, StackError

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("claude_jobs_tools.local").setLevel(
        logging.WARNING if quiet else logging.INFO
    )
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if log_level:
        os.environ["POWERTOOLS_LOG_LEVEL"] = log_level.upper()

    # `kill -USR1 <pid>` prints every thread's stack: what a stuck stack is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait for running jobs
            _say("stopping now")
            os._exit(130)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    config = StackConfig.from_env(
        host=host,
        port=port,
        workers=workers,
        model_provider=provider.value,
        invocation_seconds=invocation_seconds,
        githost=githost,
    )
    stack = LocalStack(config)
    _say("claude-jobs local stack: starting (AWS emulator, resources, functions)…")
    try:
        stack.start()
    except StackError as exc:
        _say(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        _say(f"error: cannot start: {exc}", err=True)
        raise typer.Exit(2) from None

    try:
        _print_banner(stack, DEV_KEYS_ENV)
        if _wait_until_healthy(stack.url, stop):
            _say(f"ready: {stack.url}  (Ctrl-C to stop)")
        elif not stop.is_set():
            _say(f"error: {stack.url}/v1/health did not answer 200", err=True)
            raise typer.Exit(1)
        while not stop.wait(0.5):
            pass
    finally:
        busy = stack.busy_workers
        _say("stopping" + (f": waiting up to 10s for {busy} running job(s)" if busy else "…"))
        abandoned = stack.stop(grace_seconds=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if abandoned:
            _say(f"stopped; {abandoned} job(s) abandoned mid-run")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # the abandoned worker threads must not hold the exit
        _say("stopped")


def _say(message: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    print(message, file=stream, flush=True)


def _print_banner(stack: object, dev_keys_env: str) -> None:
    from ..local.stack import LocalStack

    assert isinstance(stack, LocalStack)
    lines = [
        "",
        f"  API        {stack.url}",
    ]
    if stack.config.model_provider == "bedrock":
        lines.append(
            "  model      Amazon Bedrock, OFFLINE STAND-IN: canned answers in Bedrock's wire format"
            if stack.offline_model
            else f"  model      Amazon Bedrock at {stack.upstream_url}"
        )
        lines.append(
            "             (no Anthropic key; the worker's proxy signs each call with the "
            "stack's credentials)"
        )
    elif stack.offline_model:
        lines.append(
            "  model      OFFLINE STAND-IN: answers are canned, not Claude's "
            "(set ANTHROPIC_API_KEY for real answers)"
        )
    elif stack.config.anthropic_api_key:
        lines.append(f"  model      {stack.upstream_url} (key in the emulated Secrets Manager)")
    else:
        lines.append(f"  model      {stack.upstream_url} (no ANTHROPIC_API_KEY: a placeholder key)")
    lines.append(f"  workers    {stack.config.workers}")
    lines.append(
        f"  AWS        moto at {stack.moto_url} (in memory: gone when the stack stops; "
        "it serves only the stack's own key)"
    )
    if stack.settings is not None and (stack.notifier_running or stack.triggers_running):
        served = [
            name
            for name, running in (
                ("completion events and webhooks", stack.notifier_running),
                ("S3 and EventBridge triggers", stack.triggers_running),
            )
            if running
        ]
        lines.append(f"  also       {', '.join(served)}")
    generated = [k for k in stack.keys if k.generated]
    given = [k for k in stack.keys if not k.generated]
    if given:
        tenants = ", ".join(k.tenant_id for k in given)
        lines.append(f"  API keys   from {dev_keys_env}, tenants: {tenants}")
    for key in generated:
        lines.append(f"  API key    {key.key}  (tenant {key.tenant_id!r}; generated, shown once)")
    lines += [
        "",
        "  Try it:",
        f"    export CLAUDE_JOBS_URL={stack.url}",
    ]
    if generated:
        lines.append(f"    export CLAUDE_JOBS_API_KEY={generated[0].key}")
    lines += [f'    {_command()} submit "Say hello in three languages" --wait', ""]
    if stack.githost is not None:
        demo = f"{stack.githost.url}/demo/hello"
        lines += [
            f"  Git host   stand-in at {stack.githost.url} (demo/hello; every tenant connected",
            "             through an installation of its GitHub App;",
            f"             bare repositories in {stack.githost.root})",
            f'    {_command()} submit "Add a goodbye.py" --tools Read,Write,Edit,Bash \\',
            f"      --repository '{{\"url\": \"{demo}\"}}' --pull-request '{{}}' --wait",
            "",
        ]
        lines += _github_events_lines(stack)
    if stack.triggers_running and stack.settings is not None:
        # The emulator's key, for the developer's own shell: printed here and nowhere else
        # (no file). A job's agent cannot read this terminal; keep this output out of files a
        # job could read.
        aws_key = stack.aws_credentials
        lines += [
            "  Triggers, webhook secrets and vault entries (claude-jobs trigger … | webhooks",
            "  secret … | vault set …) need",
            "  the emulator's key (it serves no other; keep it out of files a job could read):",
            f"    export AWS_ENDPOINT_URL={stack.moto_url} "
            f"AWS_ACCESS_KEY_ID={aws_key.access_key_id} "
            f"AWS_SECRET_ACCESS_KEY={aws_key.secret_access_key} AWS_DEFAULT_REGION=us-east-1",
            f"    export INBOX_BUCKET={stack.settings.inbox_bucket} "
            f"EVENT_BUS_NAME={stack.settings.event_bus_name} "
            f"WEBHOOK_SECRET_ID={stack.settings.webhook_secret_id} "
            f"VAULT_SECRET_PREFIX={stack.settings.vault_secret_prefix}",
            "",
        ]
    if stack.settings is not None and stack.settings.mcp_allowed_urls:
        allowed = ", ".join(stack.settings.mcp_allowed_urls)
        lines += [f"  MCP servers allowed (MCP_ALLOWED_URLS): {allowed}", ""]
    print("\n".join(lines), flush=True)


def _github_events_lines(stack: object) -> list[str]:
    """How to deliver a GitHub event to the stack: its URL, the webhook secret's id (never its
    value), the tenants' installations and who may start a job."""
    from ..local.stack import LocalStack

    assert isinstance(stack, LocalStack)
    events = stack.github_events
    if events is None or stack.settings is None:
        return []
    installations = ", ".join(f"{t} {n}" for t, n in events.installations.items())
    return [
        f"  GitHub     events at POST {stack.url}/v1/github/events (the stand-in's GitHub App,",
        f"             id {stack.settings.github_app_id}; installations: {installations})",
        "    sign the body with the webhook secret (X-Hub-Signature-256: sha256=<HMAC-SHA256>),",
        f"    secret {events.webhook_secret_id} in the emulated Secrets Manager; a comment by "
        f"{events.collaborator!r}",
        f"    mentioning {stack.settings.github_handle} on {events.repository} starts a job "
        "(docs/github.md)",
        "",
    ]


def _command() -> str:
    """How to call this command from another shell: `claude-jobs`, or its path when it lives
    in a virtualenv that is not activated (as under `make dev`)."""
    from pathlib import Path

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    in_venv = sys.prefix != sys.base_prefix
    activated = os.environ.get("VIRTUAL_ENV") and Path(os.environ["VIRTUAL_ENV"]) == Path(
        sys.prefix
    )
    if script is None or script.name != "claude-jobs" or not in_venv or activated:
        return "claude-jobs"
    script = script.absolute()
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _wait_until_healthy(url: str, stop: threading.Event) -> bool:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if httpx.get(f"{url}/v1/health", timeout=5).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        stop.wait(0.1)
    return False

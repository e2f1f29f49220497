"""`claude-jobs`: the root command, composed of the groups in this package.

Each module defines its own Typer app and imports nothing from here; AWS and the local stack
are imported inside the commands that use them, so `claude-jobs --help` stays quick.
"""

from __future__ import annotations

import typer

from . import approvals, dev, github, jobs, keys, migrate, trigger, vault, webhooks

app = typer.Typer(
    name="claude-jobs",
    help="Claude Code as a serverless job service: admin, client and local stack.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(jobs.app)  # submit, status, wait, list, cancel
app.add_typer(approvals.app)  # approvals, approve
app.add_typer(dev.app)  # dev
app.add_typer(jobs.sessions_app, name="sessions")  # sessions show|delete
app.add_typer(keys.app, name="keys")
app.add_typer(trigger.app, name="trigger")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(vault.app, name="vault")  # set|list|delete: MCP servers' credentials
app.add_typer(github.app, name="github")
app.add_typer(migrate.app, name="migrate")  # one-off data changes after a deploy

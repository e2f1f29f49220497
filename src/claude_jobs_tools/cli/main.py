"""`claude-jobs`: the root command. Each group lives in its own module of this package."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="claude-jobs",
    help="Claude Code as a serverless job service: admin, client and local stack.",
    no_args_is_help=True,
    add_completion=False,
)

# Each module adds its commands to `app` (or a sub-app of it) when imported; AWS and the local
# stack are imported inside the commands that use them, so `claude-jobs --help` stays quick.
from . import dev, jobs, keys, trigger, webhooks  # noqa: E402, F401

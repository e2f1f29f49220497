"""`claude-jobs`: the root command. Each group lives in its own module of this package."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="claude-jobs",
    help="Claude Code as a serverless job service: admin, client and local stack.",
    no_args_is_help=True,
    add_completion=False,
)


def _register() -> None:
    # Each module adds its commands to `app` (or a sub-app) when imported.
    import importlib

    for module in ("keys", "client", "dev", "trigger", "webhooks"):
        try:
            importlib.import_module(f"claude_jobs.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"claude_jobs.cli.{module}":
                raise


_register()

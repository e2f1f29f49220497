"""`claude-jobs vault set | list | delete --tenant T`: a tenant's vault entries (the MCP
servers' credentials a job names in `mcp_servers[].credential`).

Entry NAME of tenant T is the Secrets Manager secret `<VAULT_SECRET_PREFIX>T/NAME` (default
prefix `claude-jobs/vault/`), written with the usual AWS credentials and region;
`AWS_ENDPOINT_URL` points the command at an emulator (the local stack's moto server). Values are
write-only: `set` reads the value from an argument, `--from-stdin` or a prompt, and nothing
ever prints one back.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from claude_jobs.adapters.vault import SecretsManagerVault

app = typer.Typer(
    name="vault",
    help="Set, list and delete a tenant's vault entries (MCP servers' credentials).",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)

Tenant = Annotated[str, typer.Option("--tenant", help="The tenant whose vault this is.")]
Name = Annotated[str, typer.Argument(help="The entry's name, e.g. the server's (kb, docs_api).")]


def _vault() -> SecretsManagerVault:
    from claude_jobs.adapters.vault import SecretsManagerVault
    from claude_jobs.wiring import Container

    container = Container()
    return SecretsManagerVault(
        container.client("secretsmanager"), container.settings.vault_secret_prefix
    )


@app.command("set")
def set_entry(
    tenant: Tenant,
    name: Name,
    value: Annotated[
        str | None,
        typer.Argument(help="The value (omit it to be prompted, or use --from-stdin)."),
    ] = None,
    from_stdin: Annotated[
        bool, typer.Option("--from-stdin", help="Read the value from standard input.")
    ] = False,
) -> None:
    """Store (or replace) TENANT's entry NAME. The value is never shown again."""
    if from_stdin:
        value = sys.stdin.read().strip()
    elif value is None:
        value = typer.prompt("Value", hide_input=True)
    try:
        _vault().put(tenant, name, value or "")
    except ValueError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    errors.print(f"Stored vault entry [bold]{name}[/bold] of tenant [bold]{tenant}[/bold].")


@app.command("list")
def list_entries(tenant: Tenant) -> None:
    """TENANT's entries' names, one a line (never their values)."""
    try:
        names = _vault().names(tenant)
    except ValueError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for name in names:
        print(name)


@app.command("delete")
def delete_entry(tenant: Tenant, name: Name) -> None:
    """Delete TENANT's entry NAME (at once, without a recovery window)."""
    try:
        deleted = _vault().delete(tenant, name)
    except ValueError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not deleted:
        errors.print(f"[red]error:[/red] tenant {tenant!r} has no vault entry {name!r}")
        raise typer.Exit(1)
    errors.print(f"Deleted vault entry [bold]{name}[/bold] of tenant [bold]{tenant}[/bold].")

"""`claude-jobs keys create | list | revoke`: API key administration.

They work on the keys table named by `KEYS_TABLE` (see `Settings.from_env()`), with the usual
AWS credentials and region; `AWS_ENDPOINT_URL` points them at an emulator (the local stack's
moto server). A key is printed once, when it is created; only its SHA-256 hash is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from claude_jobs.clock import utcnow

if TYPE_CHECKING:
    from claude_jobs.keys import ApiKeyService

app = typer.Typer(
    name="keys",
    help="Create, list and revoke API keys (stored hashed in the keys table).",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)


def _service() -> ApiKeyService:
    from claude_jobs.wiring import Container

    return Container().key_service


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    name: Annotated[str, typer.Option("--name", help="A label, e.g. who holds the key.")] = "",
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", min=1, help="Days until it expires.")
    ] = None,
) -> None:
    """Create a key for TENANT and print it. It is shown this once and never again."""
    try:
        plaintext, record = _service().create(tenant, name, utcnow(), expires_days=expires_days)
    except ValueError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    expiry = record.expires_at.isoformat() if record.expires_at else "never"
    errors.print(
        f"Created key [bold]{record.key_id}[/bold] for tenant [bold]{record.tenant_id}[/bold]"
        f" (expires: {expiry}). Store it now: it cannot be shown again."
    )
    # The key alone on stdout, so that `KEY=$(claude-jobs keys create …)` works.
    print(plaintext)


@app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
) -> None:
    """List keys (ids and metadata only; keys themselves are never stored)."""
    now = utcnow()
    table = Table("key_id", "tenant", "name", "created", "expires", "state")
    for key in _service().list(tenant):
        if key.revoked:
            state = "[red]revoked[/red]"
        elif not key.is_valid(now):
            state = "[yellow]expired[/yellow]"
        else:
            state = "[green]active[/green]"
        table.add_row(
            key.key_id,
            key.tenant_id,
            key.name,
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            key.expires_at.strftime("%Y-%m-%d %H:%M") if key.expires_at else "never",
            state,
        )
    console.print(table)


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key_id shown by create/list.")]) -> None:
    """Revoke a key: requests with it are refused from now on (within the authorizer's cache
    TTL in AWS)."""
    record = _service().revoke(key_id)
    if record is None:
        errors.print(f"[red]error:[/red] no key {key_id}")
        raise typer.Exit(1)
    console.print(f"Revoked key [bold]{record.key_id}[/bold] of tenant {record.tenant_id}.")

"""`claude-jobs github connect --tenant T (--token … | --installation-id N)`: a tenant's GitHub
credential, for jobs with a `repository` (docs/github.md).

Stored in Secrets Manager as `<GITHUB_SECRET_PREFIX><tenant>` (default
`claude-jobs/github/<tenant>`), which only the worker reads. A token is read from `--token`, or
from stdin with `--token -` (so that it stays out of the shell's history); an installation id
names the tenant's installation of the deployment's GitHub App (`GITHUB_APP_ID`).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

app = typer.Typer(
    name="github",
    help="Tenants' GitHub credentials (repositories in, PRs out).",
    no_args_is_help=True,
)


@app.command("connect")
def connect(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant to connect.")],
    token: Annotated[
        str | None, typer.Option("--token", help="A GitHub token of the tenant ('-': stdin).")
    ] = None,
    installation_id: Annotated[
        int | None,
        typer.Option(
            "--installation-id", help="The tenant's installation of the GitHub App.", min=1
        ),
    ] = None,
) -> None:
    """Store TENANT's GitHub credential (replacing an earlier one)."""
    import boto3

    from claude_jobs.github.credentials import SecretsManagerCredentials, StoredCredential
    from claude_jobs.settings import Settings

    if (token is None) == (installation_id is None):
        raise typer.BadParameter("give either --token or --installation-id")
    if token == "-":  # noqa: S105 - the stdin marker, not a password
        token = sys.stdin.readline().strip()
    if token is not None and not token:
        raise typer.BadParameter("the token is empty", param_hint="--token")
    credential = StoredCredential(token=token, installation_id=installation_id)
    settings = Settings.from_env()
    store = SecretsManagerCredentials(
        boto3.client("secretsmanager"),
        settings.github_secret_prefix,
        settings.github_installation_prefix,
    )
    try:
        store.put(tenant, credential)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tenant") from None
    kind = "a token" if token is not None else f"installation {installation_id}"
    print(f"tenant {tenant!r}: GitHub connected with {kind}")

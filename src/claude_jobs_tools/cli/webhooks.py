"""`claude-jobs webhooks secret --tenant T`: a tenant's webhook signing secret.

Derived from the deployment's master signing key (Secrets Manager, `WEBHOOK_SECRET_ID`), so no
tenant secret is stored anywhere; hand it to the tenant once, over a safe channel. Receivers
verify deliveries with it (`claude_jobs.notify.webhooks.verify_signature`).
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="webhooks", help="Webhook signing secrets (derived per tenant).", no_args_is_help=True
)


@app.command("secret")
def secret(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant whose secret to print.")],
) -> None:
    """Print TENANT's webhook signing secret (alone on stdout)."""
    import boto3

    from claude_jobs.notify.webhooks import tenant_secret
    from claude_jobs.settings import Settings

    settings = Settings.from_env()
    master = boto3.client("secretsmanager").get_secret_value(SecretId=settings.webhook_secret_id)
    print(tenant_secret(master["SecretString"], tenant))

"""A job's MCP servers at the broker: its credentials read from its own tenant's vault, its
registration opened before the agent starts and closed when the run ends (`processor.py`).

A credential the vault does not hold ends the job `failed` with `mcp_credential_missing`
before the agent starts (checked here rather than at submit: the API never reads the vault,
and an entry can be deleted between submit and run anyway). A vault that cannot be read is an
infrastructure fault: the job is retried.
"""

from __future__ import annotations

from ..mcp_models import MCP_CREDENTIAL_MISSING, server_tools, url_allowed
from ..models import Job, JobErrorInfo
from .mcp_broker import BrokeredServer
from .ports import WorkerPorts

#: A job names MCP servers but this worker has no broker or vault.
MCP_UNAVAILABLE = "mcp_unavailable"
#: A job's server is no longer on the deployment's allowlist (narrowed since the submit).
MCP_SERVER_NOT_ALLOWED = "mcp_server_not_allowed"


def open_servers(ports: WorkerPorts, job: Job, token: str) -> list[str] | JobErrorInfo:
    """Register the job's servers with the broker under its token; returns the credential
    values (to be scrubbed from what is stored), or why the job cannot run."""
    servers = job.options.mcp_servers
    if not servers:
        return []
    if ports.mcp is None or ports.vault is None:
        return JobErrorInfo(
            code=MCP_UNAVAILABLE, message="this deployment's worker has no MCP broker"
        )
    brokered: list[BrokeredServer] = []
    values: list[str] = []
    for server in servers:
        if not url_allowed(server.url, ports.settings.mcp_allowed_urls):
            return JobErrorInfo(
                code=MCP_SERVER_NOT_ALLOWED,
                message=f"MCP server {server.name!r}: its URL is no longer on the "
                "deployment's MCP allowlist",
            )
    for server in servers:
        value = None
        if server.credential is not None:
            value = ports.vault.get(job.tenant_id, server.credential)  # the job's own tenant
            if value is None:
                return JobErrorInfo(
                    code=MCP_CREDENTIAL_MISSING,
                    message=f"MCP server {server.name!r}: the vault entry "
                    f"{server.credential!r} does not exist for this tenant "
                    "(claude-jobs vault set)",
                )
            values.append(value)
        brokered.append(
            BrokeredServer(
                server.name,
                server.url,
                value,
                server_tools(job.options.allowed_tools, server.name),
            )
        )
    ports.mcp.start()
    ports.mcp.open_job(token, brokered)
    return values


def close_servers(ports: WorkerPorts, job: Job, token: str) -> None:
    if job.options.mcp_servers and ports.mcp is not None:
        ports.mcp.close_job(token)

"""A submitted body checked against the model and the deployment's bounds."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ..errors import FieldError, RequestValidationError
from ..mcp_models import is_mcp_tool, url_allowed
from ..models import JobRequest, tool_base_name
from ..repository_models import repository_url_problem
from ..settings import Settings


def webhook_url_problem(url: str, *, allow_loopback: bool) -> str | None:
    """Why `url` may not receive webhooks, or None when it may.

    https only, to a public host: no credentials in the URL and no private, loopback or
    link-local address literal (a job must not make the service call into its own network).
    The local stack alone also accepts http to a loopback host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or port == 0:
        return "must be an absolute URL with a host and no credentials"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if allow_loopback and loopback and parts.scheme in ("http", "https"):
        return None
    if parts.scheme != "https":
        return "must use https"
    if loopback or host.endswith(".localhost"):
        return "must not target a loopback host"
    if address is not None and not address.is_global:
        return "must not target a private or reserved address"
    return None


def check_limits(settings: Settings, request: JobRequest) -> None:
    """Bounds that depend on the deployment: permitted tools, the budget cap, webhooks."""
    errors = limit_errors(settings, request.model_dump())
    if errors:
        raise RequestValidationError("The request is not valid.", errors)


def limit_errors(settings: Settings, body: Mapping[str, Any]) -> list[FieldError]:
    """What in a (possibly otherwise invalid) job body breaks the deployment's bounds.

    Looks only at values of the right type, so that it can run beside the model's own
    validation and a caller learns every problem of a request at once."""
    errors: list[FieldError] = []
    permitted = set(settings.permitted_tools)
    tools = body.get("allowed_tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(tool, str) and is_mcp_tool(tool):
            continue  # an MCP server's tool: the model checks it names one of the job's servers
        if isinstance(tool, str) and tool_base_name(tool) not in permitted:
            errors.append(
                FieldError(
                    ("body", "allowed_tools", i),
                    f"{tool!r} is not permitted here; permitted: " + ", ".join(sorted(permitted)),
                )
            )
    errors += _mcp_url_errors(settings, body.get("mcp_servers"))
    cap = settings.max_budget_usd_cap
    budget = body.get("max_budget_usd")
    if isinstance(budget, int | float) and not isinstance(budget, bool) and budget > cap:
        errors.append(
            FieldError(("body", "max_budget_usd"), f"must be at most {cap} (deployment cap)")
        )
    timeout = body.get("timeout_seconds")
    most = settings.max_job_seconds
    if isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > most:
        errors.append(
            FieldError(
                ("body", "timeout_seconds"),
                f"must be at most {most} (the deployment's max_job_seconds)",
            )
        )
    repository = body.get("repository")
    url = repository.get("url") if isinstance(repository, Mapping) else None
    if isinstance(url, str):
        problem = repository_url_problem(settings.github_git_url, url)
        if problem:
            errors.append(FieldError(("body", "repository", "url"), problem))
    webhook = body.get("webhook_url")
    if isinstance(webhook, str):
        problem = webhook_url_problem(webhook, allow_loopback=settings.allow_loopback_webhooks)
        if problem:
            errors.append(FieldError(("body", "webhook_url"), problem))
    return errors


def _mcp_url_errors(settings: Settings, servers: Any) -> list[FieldError]:
    """MCP servers: each URL must start with one of the deployment's `MCP_ALLOWED_URLS`."""
    errors = []
    allowed = settings.mcp_allowed_urls
    for i, server in enumerate(servers if isinstance(servers, list) else []):
        if not isinstance(server, Mapping) or not isinstance(server.get("url"), str):
            continue
        if not url_allowed(server["url"], allowed):
            name = server.get("name")
            named = f"MCP server {name!r}" if isinstance(name, str) else "this MCP server"
            errors.append(
                FieldError(
                    ("body", "mcp_servers", i, "url"),
                    f"{named}: its URL is not on the deployment's MCP allowlist "
                    "(MCP_ALLOWED_URLS)" + ("" if allowed else "; no MCP server is allowed here"),
                )
            )
    return errors


def parse_request(settings: Settings, body: Any) -> JobRequest:
    """A submitted body as a JobRequest within the deployment's bounds; otherwise one
    RequestValidationError listing every problem (the model's and the deployment's)."""
    from pydantic import ValidationError

    try:
        request = JobRequest.model_validate(body)
    except ValidationError as exc:
        errors = [
            FieldError(("body", *err["loc"]), err["msg"])
            for err in exc.errors(include_url=False, include_input=False)
        ]
        seen = {e.loc for e in errors}
        if isinstance(body, Mapping):
            errors += [e for e in limit_errors(settings, body) if e.loc not in seen]
        raise RequestValidationError("The request is not valid.", errors) from None
    check_limits(settings, request)
    return request

"""`claude-jobs keys …` against a moto server, proven through the authorizer handler."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from claude_jobs.settings import Settings
from claude_jobs.wiring import Container
from claude_jobs_tools.cli.main import app
from claude_jobs_tools.provision import provision
from tests.events import load_event
from tests.lambda_context import lambda_context

from .conftest import load_handler


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Settings]]:
    """A moto server on loopback with the stack's tables; the CLI reaches it over HTTP."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        settings = provision("cli").settings
    yield endpoint, settings
    moto.stop()


@pytest.fixture
def env(server: tuple[str, Settings], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The environment an operator's shell has: the endpoint and the table names only."""
    endpoint, settings = server
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("KEYS_TABLE", settings.keys_table)
    monkeypatch.setenv("JOBS_TABLE", settings.jobs_table)
    return settings


def authorize(key: str) -> dict[str, Any]:
    module = load_handler("authorizer")
    module.authorizer.container = Container()  # from the environment, as in Lambda
    event = load_event("authorizer_token.json")
    event["authorizationToken"] = f"Bearer {key}"
    result: dict[str, Any] = module.lambda_handler(event, lambda_context("authorizer"))
    return result


def test_create_list_revoke_round_trip(env: Settings) -> None:
    runner = CliRunner()
    # Given a key created for tenant acme
    created = runner.invoke(
        app, ["keys", "create", "--tenant", "acme", "--name", "ci", "--expires-days", "30"]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    key_id = re.fullmatch(r"cjk_([0-9a-f]{12})_\S+", key)
    assert key_id is not None, created.stdout
    # Then the authorizer accepts it for acme
    policy = authorize(key)
    assert policy["context"] == {"tenant_id": "acme", "key_id": key_id.group(1)}
    # And the listing shows it without the key or its hash
    listed = runner.invoke(app, ["keys", "list", "--tenant", "acme"])
    assert listed.exit_code == 0
    assert key_id.group(1) in listed.stdout and "active" in listed.stdout
    assert key not in listed.stdout and key.split("_")[-1] not in listed.stdout
    # When it is revoked
    revoked = runner.invoke(app, ["keys", "revoke", key_id.group(1)])
    assert revoked.exit_code == 0, revoked.output
    # Then the authorizer refuses it, and the listing says so
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(key)
    assert "revoked" in runner.invoke(app, ["keys", "list"]).stdout


def test_bad_input_is_reported_not_raised(env: Settings) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "create", "--tenant", "a:b"]).exit_code == 2
    assert (
        runner.invoke(app, ["keys", "create", "--tenant", "t", "--expires-days", "0"]).exit_code
        == 2
    )
    missing = runner.invoke(app, ["keys", "revoke", "000000000000"])
    assert missing.exit_code == 1

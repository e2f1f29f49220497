"""GitHub (issue 24): tenants' credentials in Secrets Manager (moto), the App's installation
tokens minted, cached and revoked, and the REST client — against the local Git host stand-in
(real smart-HTTP Git through `git http-backend`)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from claude_jobs.github.credentials import (
    AppJwt,
    CredentialUnavailableError,
    JobCredentials,
    SecretsManagerCredentials,
    StoredCredential,
)
from claude_jobs.github.rest import GitHubRest
from claude_jobs_tools.githost import GitHost, HostedApp
from claude_jobs_tools.githost.local import rsa_key_pair

PREFIX = "claude-jobs/github/"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return rsa_key_pair()


@pytest.fixture
def host(keys: tuple[str, str]) -> Iterator[GitHost]:
    app = HostedApp("4242", keys[1], installations={77: {"acme/app", "acme/other"}})
    with GitHost(app=app) as started:
        started.create_repository("acme/app")
        started.create_repository("acme/other")
        yield started


@pytest.fixture
def store() -> Iterator[SecretsManagerCredentials]:
    with mock_aws():
        yield SecretsManagerCredentials(boto3.client("secretsmanager", "us-east-1"), PREFIX)


def _clone(url: str, token: str, into: Path) -> subprocess.CompletedProcess[str]:
    authed = url.replace("http://", f"http://x-access-token:{token}@")
    env = {"PATH": os.environ["PATH"], "HOME": str(into.parent), "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        ["git", "clone", "-q", authed, str(into)], env=env, capture_output=True, text=True
    )


def test_a_connected_token_is_stored_and_read_back_per_tenant(
    store: SecretsManagerCredentials,
) -> None:
    # Given a tenant connected with a token, and another with an App installation
    store.put("acme", StoredCredential(token="tok-one"))
    store.put("acme", StoredCredential(token="tok-two"))  # connecting again replaces it
    store.put("globex", StoredCredential(installation_id=77))
    # Then each reads its own; a tenant never connected has none
    assert store.get("acme") == StoredCredential(token="tok-two")
    assert store.get("globex") == StoredCredential(installation_id=77)
    assert store.get("initech") is None
    assert store.get("../acme") is None


def test_an_installation_token_is_minted_for_the_jobs_repository_only_and_revoked(
    host: GitHost, store: SecretsManagerCredentials, keys: tuple[str, str], tmp_path: Path
) -> None:
    # Given a tenant connected through the App's installation
    store.put("acme", StoredCredential(installation_id=77))
    rest = GitHubRest(host.api_url)
    app_jwt = AppJwt("4242", lambda: keys[0])
    credentials = JobCredentials(store, rest, app_jwt)
    # When a job on acme/app gets its credential (twice: the App's JWT is kept)
    credential = credentials.for_job("acme", "app")
    second = credentials.for_job("acme", "app")
    assert app_jwt.made == 1
    # Then it clones that repository, and not the other one of the same installation
    assert _clone(f"{host.url}/acme/app.git", credential.token, tmp_path / "a").returncode == 0
    assert _clone(f"{host.url}/acme/other.git", credential.token, tmp_path / "b").returncode != 0
    assert rest.get_repository(credential.token, "acme", "app") is not None
    # When the job ends its token is revoked, and no longer clones
    credential.close()
    second.close()
    assert credential.token in host.revoked
    assert _clone(f"{host.url}/acme/app.git", credential.token, tmp_path / "c").returncode != 0


def test_a_tenant_without_a_credential_or_an_app_gets_a_clear_refusal(
    host: GitHost, store: SecretsManagerCredentials
) -> None:
    rest = GitHubRest(host.api_url)
    with pytest.raises(CredentialUnavailableError, match="no GitHub credential"):
        JobCredentials(store, rest).for_job("initech", "app")
    store.put("globex", StoredCredential(installation_id=77))
    with pytest.raises(CredentialUnavailableError, match="no GitHub App"):
        JobCredentials(store, rest).for_job("globex", "app")
    # An installation the App does not have
    store.put("hooli", StoredCredential(installation_id=99))
    app_jwt = AppJwt("4242", lambda: rsa_key_pair()[0])  # not the App's key either
    with pytest.raises(CredentialUnavailableError):
        JobCredentials(store, rest, app_jwt).for_job("hooli", "app")


def test_the_rest_client_opens_and_finds_a_pull_request(host: GitHost, tmp_path: Path) -> None:
    # Given a token for acme/app and a branch pushed to it
    token = host.add_token("tok-app", {"acme/app"})
    work = tmp_path / "w"
    assert _clone(f"{host.url}/acme/app.git", token, work).returncode == 0
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0"}
    (work / "new.txt").write_text("new\n")
    for args in (
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "new"],
        ["push", "-q", "origin", "HEAD:refs/heads/claude-jobs/j-1"],
    ):
        done = subprocess.run(["git", "-C", str(work), *args], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
    rest = GitHubRest(host.api_url)
    # When a pull request is opened
    pull = rest.create_pull_request(
        token, "acme", "app", head="claude-jobs/j-1", base="main", title="T", body="B", draft=True
    )
    # Then it is found again by its branch, and the stand-in holds the change on it
    assert rest.find_pull_request(token, "acme", "app", "claude-jobs/j-1") == pull
    assert rest.find_pull_request(token, "acme", "app", "claude-jobs/j-2") is None
    assert host.read_file("acme/app", "claude-jobs/j-1", "new.txt") == "new\n"
    assert rest.get_repository(token, "acme", "other") is None


def test_claude_jobs_github_connect_stores_a_token_or_an_installation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from claude_jobs_tools.cli.main import app

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        runner = CliRunner()
        # When an operator connects two tenants (the token from stdin)
        first = runner.invoke(
            app, ["github", "connect", "--tenant", "acme", "--token", "-"], "tok-x\n"
        )
        second = runner.invoke(
            app, ["github", "connect", "--tenant", "globex", "--installation-id", "77"]
        )
        both = runner.invoke(
            app, ["github", "connect", "--tenant", "x", "--token", "t", "--installation-id", "7"]
        )
        # Then each is stored under the prefix, and a command with both is refused
        assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
        assert "tok-x" not in first.output
        store = SecretsManagerCredentials(boto3.client("secretsmanager", "us-east-1"), PREFIX)
        assert store.get("acme") == StoredCredential(token="tok-x")
        assert store.get("globex") == StoredCredential(installation_id=77)
        assert both.exit_code != 0 and store.get("x") is None

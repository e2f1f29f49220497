"""The `Vault` port's contract: the Secrets Manager adapter (on moto) and the in-memory fake
behave alike. Entries are per tenant; names only are listed; a value is read back only by
`get` for its own tenant."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from claude_jobs.adapters.vault import VaultNameError
from claude_jobs.ports import Vault
from tests.fakes.vault import MemoryVault


@pytest.fixture(params=["secretsmanager", "memory"])
def vault(request: pytest.FixtureRequest) -> Iterator[Vault]:
    if request.param == "memory":
        yield MemoryVault()
        return
    from moto import mock_aws

    from claude_jobs.adapters.vault import SecretsManagerVault

    with mock_aws():
        yield SecretsManagerVault(
            boto3.client("secretsmanager", region_name="us-east-1"), "claude-jobs/vault/"
        )


def test_an_entry_is_the_tenants_own(vault: Vault) -> None:
    # Given an entry of tenant acme
    vault.put("acme", "kb", "value-one")
    # Then acme reads it; another tenant, even one whose id starts alike, does not
    assert vault.get("acme", "kb") == "value-one"
    assert vault.get("acme2", "kb") is None
    assert vault.get("other", "kb") is None
    assert vault.names("acme") == ["kb"]
    assert vault.names("acme2") == []
    assert vault.names("acm") == []


def test_put_replaces_delete_removes(vault: Vault) -> None:
    vault.put("acme", "kb", "one")
    vault.put("acme", "kb", "two")
    vault.put("acme", "docs", "three")
    assert vault.get("acme", "kb") == "two"
    assert vault.names("acme") == ["docs", "kb"]
    assert vault.delete("acme", "kb") is True
    assert vault.delete("acme", "kb") is False
    assert vault.get("acme", "kb") is None
    assert vault.names("acme") == ["docs"]
    # And an entry deleted can be set again
    vault.put("acme", "kb", "four")
    assert vault.get("acme", "kb") == "four"


@pytest.mark.parametrize(
    ("tenant", "name"), [("acme", "../x"), ("acme", "a/b"), ("a/b", "kb"), ("", "kb")]
)
def test_unusable_names_are_refused(vault: Vault, tenant: str, name: str) -> None:
    with pytest.raises(VaultNameError):
        vault.put(tenant, name, "v")
    with pytest.raises(VaultNameError):
        vault.get(tenant, name)


@pytest.mark.parametrize("value", ["", "a\nb", "x" * 8193])
def test_a_value_must_fit_a_header(vault: Vault, value: str) -> None:
    with pytest.raises(ValueError, match="vault value"):
        vault.put("acme", "kb", value)

"""GitHub events (issue 24) in the templates: the route has no authorizer; with
`github_events` on, the webhook secret exists, the submit function is told where it is, and
only the submit and notifier roles gain reads of it and of the tenants' GitHub credentials."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Annotations

from claude_jobs.github.credentials import SecretsManagerCredentials, StoredCredential
from claude_jobs.settings import Settings
from tests.infra.conftest import Synthesized, _synth
from tests.infra.helpers import role_permissions
from tests.infra.test_compliance import NAG_PACKS

pytestmark = pytest.mark.synth

GITHUB_CONTEXT = {"stage": "gh", "github_events": "true", "github_app_id": "4242"}


@pytest.fixture(scope="module")
def github_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synth(tmp_path_factory.mktemp("cdk.out.github"), GITHUB_CONTEXT)


def _function(synth: Synthesized, name: str) -> tuple[str, Any]:
    for logical_id, function in synth.service.find_resources("AWS::Lambda::Function").items():
        if logical_id.startswith(f"{name}Function"):
            return logical_id, function
    raise AssertionError(f"no {name} function")


def _secret_reads(synth: Synthesized, name: str) -> str:
    """Every GetSecretValue resource of the function's role, as text."""
    _, function = _function(synth, name)
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    found = []
    for policy in synth.service.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            if "secretsmanager:GetSecretValue" in (
                [actions] if isinstance(actions, str) else actions
            ):
                found.append(json.dumps(statement["Resource"]))
    return " ".join(found)


def test_the_route_is_public_and_authenticated_by_its_function(synth: Synthesized) -> None:
    methods = synth.service.find_resources("AWS::ApiGateway::Method")
    (method,) = [
        m for m in methods.values() if m["Properties"].get("OperationName") == "githubEvent"
    ]
    assert method["Properties"]["AuthorizationType"] == "NONE"
    assert "RequestModels" not in method["Properties"]  # GitHub's payload, not a job request


def test_without_github_events_nothing_reads_a_webhook_secret(synth: Synthesized) -> None:
    assert "github-webhook-secret" not in json.dumps(synth.templates)
    _, submit = _function(synth, "Submit")
    assert "GITHUB_WEBHOOK_SECRET_ID" not in submit["Properties"]["Environment"]["Variables"]
    assert "/github/*" not in _secret_reads(synth, "Submit")
    assert "/github/*" not in _secret_reads(synth, "Notifier")


def test_with_github_events_the_submit_and_notifier_read_what_they_need(
    github_synth: Synthesized,
) -> None:
    secrets = github_synth.stateful.find_resources("AWS::SecretsManager::Secret")
    assert any(
        s["Properties"].get("Name") == "claude-jobs-gh/github-webhook-secret"
        for s in secrets.values()
    )
    _, submit = _function(github_synth, "Submit")
    env = submit["Properties"]["Environment"]["Variables"]
    assert {"GITHUB_WEBHOOK_SECRET_ID", "GITHUB_HANDLE", "GITHUB_APP_ID"} <= env.keys()
    assert env["GITHUB_HANDLE"] == "@claude-jobs"
    assert env["GITHUB_ALLOWED_TOOLS"] == "Read,Glob,Grep,Edit,Write"
    submit_reads = _secret_reads(github_synth, "Submit")
    assert "claude-jobs-gh/github/*" in submit_reads
    assert "GitHubWebhookSecret" in submit_reads
    assert "claude-jobs-gh/github-app-key" in submit_reads
    notifier_reads = _secret_reads(github_synth, "Notifier")
    assert "claude-jobs-gh/github/*" in notifier_reads
    assert "GitHubWebhookSecret" not in notifier_reads
    # and the status function, which answers no GitHub event, reads none of it
    assert "github" not in _secret_reads(github_synth, "Status")


def test_with_github_events_there_is_no_unacknowledged_nag_error(
    github_synth: Synthesized,
) -> None:
    for stack in (github_synth.built.stateful, github_synth.built.service):
        errors = Annotations.from_stack(stack).find_error("*", NAG_PACKS)
        assert errors == [], [e.entry.data for e in errors]


def _reads(synth: Synthesized, name: str) -> list[str]:
    """The function's GetSecretValue resources as ARN patterns (IAM's `*` and `?`)."""
    _, function = _function(synth, name)
    outputs: dict[str, Any] = synth.stateful.to_json().get("Outputs", {})
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        resource
        for action, resource in role_permissions(synth.service, role, outputs)
        if action == "secretsmanager:GetSecretValue"
    ]


def _granted(patterns: list[str], name: str) -> bool:
    """Would a GetSecretValue of secret `name` (with its random suffix) be allowed?"""
    arn = f"arn:AWS::Partition:secretsmanager:AWS::Region:AWS::AccountId:secret:{name}-AbCdEf"
    return any(fnmatch.fnmatchcase(arn, pattern) for pattern in patterns)


def test_the_worker_and_notifier_cannot_read_the_installation_lookups(
    github_synth: Synthesized, aws: None
) -> None:
    # Given the secrets `claude-jobs github connect --installation-id` writes, where the
    # deployed functions' settings put them (moto)
    _, submit = _function(github_synth, "Submit")
    env = submit["Properties"]["Environment"]["Variables"]
    settings = Settings.model_validate({k: v for k, v in env.items() if isinstance(v, str)})
    secrets = boto3.client("secretsmanager", "us-east-1")
    store = SecretsManagerCredentials(
        secrets, settings.github_secret_prefix, settings.github_installation_prefix
    )
    store.put("acme", StoredCredential(installation_id=77))
    names = [s["Name"] for s in secrets.list_secrets()["SecretList"]]
    (credential,) = [n for n in names if n.endswith("/acme")]
    (lookup,) = [n for n in names if n != credential]

    # Then the worker and the notifier may read the tenant's credential, not the lookup
    for function in ("Worker", "Notifier"):
        reads = _reads(github_synth, function)
        assert _granted(reads, credential), (function, reads)
        assert not _granted(reads, lookup), (function, lookup, reads)
    # and the submit function (the webhook) may read both
    assert _granted(_reads(github_synth, "Submit"), lookup)
    assert _granted(_reads(github_synth, "Submit"), credential)

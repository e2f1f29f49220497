"""A Bedrock deployment (`-c model_provider=bedrock`): no Anthropic secret anywhere, and the
worker may invoke exactly the configured inference profiles and the models they route to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from infra.config import InfraConfig
from tests.infra.conftest import Synthesized
from tests.infra.helpers import GITHUB_SECRETS_ARN, VAULT_SECRETS, resolve, role_permissions

pytestmark = pytest.mark.synth

SONNET = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "anthropic.claude-haiku-4-5-20251001-v1:0"
PROFILE_ARN = "arn:AWS::Partition:bedrock:AWS::Region:AWS::AccountId:inference-profile/us."
MODEL_ARN = "arn:AWS::Partition:bedrock:{region}::foundation-model/"
REGIONS = ("us-east-1", "us-east-2", "us-west-2")


def _worker(synth: Synthesized) -> Mapping[str, Any]:
    functions = synth.service.find_resources("AWS::Lambda::Function")
    (worker,) = [f for i, f in functions.items() if i.startswith("WorkerFunction")]
    return worker


def _worker_permissions(synth: Synthesized) -> set[tuple[str, str]]:
    role_id = _worker(synth)["Properties"]["Role"]["Fn::GetAtt"][0]
    outputs: dict[str, Any] = synth.stateful.to_json().get("Outputs", {})
    return role_permissions(synth.service, role_id, outputs)


def test_no_anthropic_secret_is_created_or_granted(bedrock_synth: Synthesized) -> None:
    # Given the app synthesized with model_provider=bedrock
    # Then the only secrets are the generated keys (webhook signatures, page tokens), and no
    # role may read another secret
    secrets = bedrock_synth.stateful.find_resources("AWS::SecretsManager::Secret")
    assert sorted(s["Properties"]["Name"] for s in secrets.values()) == [
        "claude-jobs-prod/page-token-key",
        "claude-jobs-prod/webhook-signing-key",
    ]
    # (but the tenants' vault entries, for MCP servers, and their GitHub credentials, by their
    # name prefixes: tests/infra/test_iam.py)
    read = {r for a, r in _worker_permissions(bedrock_synth) if a.startswith("secretsmanager")}
    assert read == {VAULT_SECRETS, GITHUB_SECRETS_ARN}
    # And the worker is told its provider and models, and nothing of a key
    env = _worker(bedrock_synth)["Properties"]["Environment"]["Variables"]
    assert env["MODEL_PROVIDER"] == "bedrock"
    assert env["BEDROCK_MODELS"] == (f"claude-sonnet-4-5=us.{SONNET},claude-haiku-4-5=us.{HAIKU}")
    assert not {k for k in env if k.startswith("ANTHROPIC_")}
    assert "anthropic-api-key" not in json.dumps(bedrock_synth.templates)


def test_the_worker_may_invoke_exactly_the_profiles_and_their_models(
    bedrock_synth: Synthesized,
) -> None:
    # Given the worker role's permissions
    bedrock = {p for p in _worker_permissions(bedrock_synth) if p[0].startswith("bedrock:")}
    # Then they are the two invoke actions on each profile and on its model in each region
    # it routes to, and nothing else of Bedrock
    arns = {PROFILE_ARN + SONNET, PROFILE_ARN + HAIKU} | {
        MODEL_ARN.format(region=region) + model for region in REGIONS for model in (SONNET, HAIKU)
    }
    assert bedrock == {
        (action, arn)
        for action in ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream")
        for arn in arns
    }


def test_the_bedrock_app_passes_cdk_nag(bedrock_synth: Synthesized) -> None:
    # Given both stacks of the Bedrock deployment, Then cdk-nag reports no unacknowledged error
    for stack in (bedrock_synth.built.stateful, bedrock_synth.built.service):
        errors = Annotations.from_stack(stack).find_error(
            "*", Match.string_like_regexp(r"^(AwsSolutions|Serverless)-")
        )
        assert errors == [], [e.entry.data for e in errors]


def test_an_anthropic_deployment_grants_no_bedrock(synth: Synthesized) -> None:
    # Given the default deployment, Then its worker may not invoke any Bedrock model
    assert not {a for a, _ in _worker_permissions(synth) if a.startswith("bedrock:")}


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        (
            {"default_model": "claude-opus-4-5", "bedrock_models": "claude-sonnet-4-5=us.x.y"},
            "default_model",
        ),
        ({"bedrock_models": "claude-sonnet-4-5=us.x/../y"}, "not Bedrock model ids"),
        ({"bedrock_models": "claude-sonnet-4-5"}, "name=model-id"),
        ({"bedrock_regions": "us-east-1,*"}, "region"),
    ],
)
def test_a_bedrock_configuration_that_cannot_work_is_refused(
    context: dict[str, str], problem: str
) -> None:
    # Given a Bedrock configuration with a flaw, When it is loaded, Then it is refused
    with pytest.raises(ValueError, match=problem):
        InfraConfig.load({"model_provider": "bedrock", **context})


def test_global_and_in_region_models_are_granted_where_they_run() -> None:
    # Given a global profile and a plain model id
    from aws_cdk import App, Stack
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Template

    from infra.components.bedrock import BedrockModels

    stack = Stack(App(), "S")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    BedrockModels(
        stack,
        "M",
        models={"a": "global.anthropic.claude-x-v1:0", "b": "anthropic.claude-y-v1:0"},
        regions=["us-east-1"],
    ).grant_invoke(role)
    # When synthesized
    (policy,) = Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    # Then the global profile's model is granted region-less too, the plain one in-region only
    assert {resolve(r, {}) for r in statement["Resource"]} == {
        "arn:AWS::Partition:bedrock:AWS::Region:AWS::AccountId:inference-profile/"
        "global.anthropic.claude-x-v1:0",
        "arn:AWS::Partition:bedrock:us-east-1::foundation-model/anthropic.claude-x-v1:0",
        "arn:AWS::Partition:bedrock:::foundation-model/anthropic.claude-x-v1:0",
        "arn:AWS::Partition:bedrock:AWS::Region::foundation-model/anthropic.claude-y-v1:0",
    }

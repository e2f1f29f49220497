"""Small readers over synthesized templates."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template


def find_one(template: Template, type_: str, properties: dict[str, Any]) -> tuple[str, Any]:
    """The one resource of a type whose properties include `properties`."""
    found = template.find_resources(type_, {"Properties": properties})
    assert len(found) == 1, f"expected one {type_} with {properties}, found {list(found)}"
    return next(iter(found.items()))


def resolve(expr: Any, outputs: dict[str, Any]) -> str:
    """A readable form of a resource expression: `<LogicalId>.Arn`, `<LogicalId>`, literals,
    with references to the stateful stack's outputs followed to the resource they name."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and len(expr) == 1:
        ((fn, arg),) = expr.items()
        if fn == "Fn::GetAtt":
            return f"{arg[0]}.{arg[1]}"
        if fn == "Ref":
            return str(arg)
        if fn == "Fn::GetStackOutput":
            return resolve(outputs[arg["OutputName"]]["Value"], outputs)
        if fn == "Fn::ImportValue":
            name = arg if isinstance(arg, str) else str(arg)
            for output in outputs.values():
                if output.get("Export", {}).get("Name") == name:
                    return resolve(output["Value"], outputs)
        if fn == "Fn::Join" and arg[0] == "":
            return "".join(resolve(part, outputs) for part in arg[1])
    raise AssertionError(f"unexpected expression {expr!r}")


def role_permissions(
    service: Template, role_id: str, outputs: dict[str, Any]
) -> set[tuple[str, str]]:
    """Every (action, resource) pair the role's policies allow, managed policies excluded."""
    pairs: set[tuple[str, str]] = set()
    for policy in service.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            targets = statement["Resource"]
            for action in [actions] if isinstance(actions, str) else actions:
                for target in targets if isinstance(targets, list) else [targets]:
                    pairs.add((action, resolve(target, outputs)))
    return pairs


#: The worker's secrets besides the Anthropic key, each granted by a name prefix only: the
#: tenants' vault entries (MCP servers' credentials, issue 25) and GitHub credentials (issue 24).
VAULT_SECRETS = (
    "arn:AWS::Partition:secretsmanager:AWS::Region:AWS::AccountId:secret:claude-jobs-prod/vault/*"
)
GITHUB_SECRETS_ARN = (
    "arn:AWS::Partition:secretsmanager:AWS::Region:AWS::AccountId:secret:claude-jobs-prod/github/*"
)

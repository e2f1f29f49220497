"""Amazon Bedrock model access for the worker (`model_provider=bedrock`).

No resource is created: the construct turns the deployment's model map into the ARNs the
worker may invoke, and grants exactly `bedrock:InvokeModel` and
`bedrock:InvokeModelWithResponseStream` on them:

- each inference profile the model names map to (`us.anthropic.claude-…`: a geographic or
  `global.` prefix), in the deployment's region and account;
- the foundation model each profile routes to, in every region of `bedrock_regions` (a
  cross-region profile sends the request to one of them; `global.` profiles also need the
  region-less foundation-model ARN);
- a plain model id (no profile prefix, in-region on-demand use): its foundation model in the
  deployment's region.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

#: The actions a model invocation needs: InvokeModel and its streaming form, nothing else.
INVOKE_ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
#: A model or inference profile id (the worker's proxy accepts the same).
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
#: Prefixes of system-defined cross-region inference profiles.
PROFILE_PREFIX = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.(?P<model>.+)$")


def foundation_model(model_id: str) -> str:
    """The foundation model an inference profile routes to (a model id: itself)."""
    found = PROFILE_PREFIX.match(model_id)
    return found["model"] if found else model_id


class BedrockModels(Construct):
    """The ARNs of the configured models, and the grant to invoke them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        models: Mapping[str, str],
        regions: Iterable[str],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        regions = list(regions)
        arns: list[str] = []

        def add(arn: str) -> None:
            if arn not in arns:
                arns.append(arn)

        for model_id in sorted(set(models.values())):
            found = PROFILE_PREFIX.match(model_id)
            if found is None:  # a model id, invoked on demand in the deployment's region
                add(self._foundation_arn(stack, model_id, stack.region))
                continue
            add(
                stack.format_arn(
                    service="bedrock",
                    resource="inference-profile",
                    resource_name=model_id,
                    arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                )
            )
            for region in regions:
                add(self._foundation_arn(stack, found["model"], region))
            if found.group(1) == "global":
                add(self._foundation_arn(stack, found["model"], ""))
        #: Every ARN the worker may invoke.
        self.arns = arns

    @staticmethod
    def _foundation_arn(stack: Stack, model_id: str, region: str) -> str:
        return stack.format_arn(
            service="bedrock",
            region=region,
            account="",
            resource="foundation-model",
            resource_name=model_id,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def grant_invoke(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=INVOKE_ACTIONS, resources=self.arns)
        )

"""Local bundling of the shared Lambda layer for CDK: no Docker.

What goes into the layer, and how it is installed, is `infra.packaging` (shared with the
artifact tests); this module only hands that build to CDK as an `ILocalBundling`, so CDK never
falls back to Docker. The wheels are installed for the Lambda runtime and architecture
(`packaging.LAMBDA`), so a developer's x86 laptop builds the same layer the arm64 functions load.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling

from infra import packaging


@jsii.implements(ILocalBundling)
class LocalLayerBundler:
    """Bundles the layer on this machine; CDK never falls back to Docker."""

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        packaging.build_layer(Path(output_dir), packaging.LAMBDA)
        return True


def layer_bundling() -> BundlingOptions:
    return BundlingOptions(
        # Required by the API, never pulled: local bundling always succeeds.
        image=DockerImage.from_registry("local-bundling-only"),
        # jsii passes the options positionally; its typing lists them as keywords.
        local=cast(ILocalBundling, LocalLayerBundler()),
    )

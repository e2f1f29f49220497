"""The artifacts as they ship, built once per session, and an AWS emulator to run them against.

The layer and the zip functions are built by `infra.packaging` (the code path the CDK app
uses) for this machine's interpreter, from the same pins; the Lambda runtime's own boto3 is
installed on its own. Wheels are cached under `infra/.build/`, so only the first session needs
the package index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from infra import packaging
from tests.artifacts.artifacts import (
    SAMPLE_KEY,
    SAMPLE_TENANT,
    Artifacts,
    Deployment,
    aws_at,
)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    root = tmp_path_factory.mktemp("artifacts")
    packaging.build_layer(root / "layer", packaging.HOST)
    functions = {}
    for name in packaging.zip_functions():
        packaging.build_function(name, root / "functions" / name)
        functions[name] = root / "functions" / name
    return Artifacts(root / "layer" / "python", functions, packaging.lambda_runtime_sdk())


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    """A moto server with the stack's resources (from the provisioner) and the samples' key."""
    from moto.server import ThreadedMotoServer

    from claude_jobs.clock import utcnow
    from claude_jobs.wiring import Container
    from claude_jobs_tools.provision import provision

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with aws_at(endpoint):
        # prefix "test": the sample S3 event names the inbox bucket "test-inbox"
        provisioned = provision("test", secret_value="sk-ant-artifact-test-not-a-key")
        Container(provisioned.settings).key_service.create(
            SAMPLE_TENANT, "samples", utcnow(), plaintext=SAMPLE_KEY
        )
    yield Deployment(endpoint, provisioned)
    server.stop()

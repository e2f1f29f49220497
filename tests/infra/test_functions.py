"""The functions: runtime, architecture, layer, sizing, environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_jobs.definitions import FUNCTIONS
from claude_jobs.settings import Settings
from infra.config import InfraConfig
from tests.infra.conftest import Synthesized
from tests.infra.helpers import find_one

pytestmark = pytest.mark.synth

ZIP_FUNCTIONS = tuple(f.name.capitalize() for f in FUNCTIONS.values() if f.package == "zip")


def _functions(synth: Synthesized) -> dict[str, Any]:
    found = synth.service.find_resources("AWS::Lambda::Function")
    return {
        name: next(f for i, f in found.items() if i.startswith(f"{name}Function"))
        for name in (f.name.capitalize() for f in FUNCTIONS.values())
    }


def test_the_functions_are_the_definition_tables(synth: Synthesized) -> None:
    # Every function of the template is an entry of the table, and every entry is there
    deployed = _functions(synth)
    others = [
        logical_id
        for logical_id in synth.service.find_resources("AWS::Lambda::Function")
        if not any(logical_id.startswith(f"{name}Function") for name in deployed)
    ]
    # (besides the handler CDK adds to configure the inbox bucket's notifications)
    assert [o for o in others if not o.startswith("BucketNotificationsHandler")] == []
    for definition in FUNCTIONS.values():
        props = deployed[definition.name.capitalize()]["Properties"]
        # with the table's timeout, description and environment variables
        assert props["Timeout"] == definition.timeout_seconds, definition.name
        assert props["Description"] == definition.description, definition.name
        variables = set(props["Environment"]["Variables"])
        assert set(definition.environment) <= variables, definition.name
        assert variables <= {*definition.environment, *definition.optional_environment}
        if definition.package == "zip":
            assert props["Handler"] == definition.handler, definition.name
            assert props["MemorySize"] == definition.memory_mb, definition.name
        else:  # the image's command is the table's handler; its memory the deployment's
            assert props["ImageConfig"]["Command"] == [definition.handler]
            assert props["MemorySize"] == InfraConfig().worker_memory_mb == definition.memory_mb


def test_zip_functions_run_the_latest_python_on_arm64_with_the_layer(synth: Synthesized) -> None:
    layer_id = next(iter(synth.service.find_resources("AWS::Lambda::LayerVersion")))
    synth.service.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": ["python3.14"], "CompatibleArchitectures": ["arm64"]},
    )
    for name in ZIP_FUNCTIONS:
        props = _functions(synth)[name]["Properties"]
        assert props["Runtime"] == "python3.14", name
        assert props["Architectures"] == ["arm64"], name
        assert props["Handler"] == "handler.lambda_handler", name
        assert props["Layers"] == [{"Ref": layer_id}], name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert props["LoggingConfig"]["LogFormat"] == "JSON", name


def test_worker_is_an_arm64_image_sized_from_configuration(synth: Synthesized) -> None:
    config = InfraConfig()
    props = _functions(synth)["Worker"]["Properties"]
    assert props["PackageType"] == "Image"
    assert props["Architectures"] == ["arm64"]
    assert props["Timeout"] == 900
    assert props["MemorySize"] == config.worker_memory_mb
    assert props["EphemeralStorage"] == {"Size": config.worker_ephemeral_storage_mb}
    assert props["ReservedConcurrentExecutions"] == config.worker_reserved_concurrency
    assert props["TracingConfig"] == {"Mode": "Active"}


def test_worker_image_is_built_for_arm64_from_its_dockerfile(synth: Synthesized) -> None:
    assets = json.loads(
        (synth.outdir / f"{synth.built.service.stack_name}.assets.json").read_text()
    )
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "functions/worker/Dockerfile"
    assert image["source"]["platform"] == "linux/arm64"
    context = synth.outdir / image["source"]["directory"]
    assert (context / "functions" / "worker" / "Dockerfile").is_file()
    # Only what the Dockerfile copies, and the Dockerfile
    assert (context / "functions" / "worker" / "handler.py").is_file()
    assert (context / "src" / "claude_jobs" / "worker").is_dir()
    assert not (context / "src" / "claude_jobs_tools").exists()
    assert not (context / ".venv").exists()
    assert not (context / "tests").exists()
    assert not (context / "infra").exists()
    assert not (context / "functions" / "submit").exists()
    assert not list(context.rglob("__pycache__"))


def test_custom_configuration_reaches_the_worker(custom_synth: Synthesized) -> None:
    _, worker = find_one(custom_synth.service, "AWS::Lambda::Function", {"PackageType": "Image"})
    props = worker["Properties"]
    assert props["MemorySize"] == 2048
    assert "ReservedConcurrentExecutions" not in props
    env = props["Environment"]["Variables"]
    assert env["PERMITTED_TOOLS"] == "Read,Grep"
    assert env["DEFAULT_MODEL"] == "claude-haiku-4-5"
    assert env["MAX_BUDGET_USD_CAP"] == "2.5"
    custom_synth.service.all_resources_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


def test_environments_are_valid_settings_and_minimal(synth: Synthesized) -> None:
    """Given each function's environment, every variable is a Settings alias or a Powertools
    variable, and each function gets only the resources it uses."""
    aliases = {f.alias for f in Settings.model_fields.values()}
    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
    expected_resources = {
        "Submit": {"JOBS_TABLE", "JOBS_QUEUE_URL", "RESULTS_BUCKET"},
        "Status": {"JOBS_TABLE", "RESULTS_BUCKET", "PAGE_TOKEN_SECRET_ID"},
        "Authorizer": {"KEYS_TABLE"},
        "Worker": {"JOBS_TABLE", "RESULTS_BUCKET", "ANTHROPIC_SECRET_ID", "ANTHROPIC_BASE_URL"},
        "Trigger": {
            "JOBS_TABLE",
            "JOBS_QUEUE_URL",
            "INBOX_BUCKET",
            "TRIGGER_DLQ_URL",
            "RESULTS_BUCKET",
        },
        "Notifier": {"JOBS_TABLE", "RESULTS_BUCKET", "EVENT_BUS_NAME", "WEBHOOK_QUEUE_URL"},
        "Webhook": {"JOBS_TABLE", "WEBHOOK_SECRET_ID", "WEBHOOK_QUEUE_URL"},
        "Reconciler": {"JOBS_TABLE", "JOBS_QUEUE_URL", "RESULTS_BUCKET"},
        "Lostjobs": {"JOBS_TABLE"},
        "Expiry": {"JOBS_TABLE"},
    }
    resource_vars = {
        "JOBS_TABLE", "KEYS_TABLE", "JOBS_QUEUE_URL", "RESULTS_BUCKET", "ANTHROPIC_SECRET_ID",
        "ANTHROPIC_BASE_URL", "EVENT_BUS_NAME", "INBOX_BUCKET", "TRIGGER_DLQ_URL",
        "WEBHOOK_SECRET_ID", "WEBHOOK_QUEUE_URL", "PAGE_TOKEN_SECRET_ID",
    }  # fmt: skip
    for name, fn in _functions(synth).items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert set(env) <= aliases | powertools, name
        assert powertools <= set(env), name
        assert set(env) & resource_vars == expected_resources[name], name


def test_no_secret_value_in_any_template_or_environment(synth: Synthesized) -> None:
    """Given both templates, nothing carries a secret value: no SecretString, no dynamic
    reference that resolves a secret, no key-shaped string, no API key variable."""
    for name, template in synth.templates.items():
        text = json.dumps(template)
        assert "{{resolve:secretsmanager" not in text, name
        assert "sk-ant-" not in text, name
        for resource in template["Resources"].values():
            assert "SecretString" not in resource.get("Properties", {}), name
    # The Anthropic key is created empty; the webhook signing key is generated by
    # CloudFormation, so neither value is ever in a template.
    secrets = {
        s["Properties"]["Name"]: s["Properties"]
        for s in synth.stateful.find_resources("AWS::SecretsManager::Secret").values()
    }
    assert "GenerateSecretString" not in secrets["claude-jobs-prod/anthropic-api-key"]
    assert "GenerateSecretString" in secrets["claude-jobs-prod/webhook-signing-key"]
    for fn in synth.service.find_resources("AWS::Lambda::Function").values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        assert "ANTHROPIC_API_KEY" not in env
        assert not any("resolve:secretsmanager" in json.dumps(v) for v in env.values())
    for path in Path(synth.outdir).glob("*.template.json"):
        assert "sk-ant-" not in path.read_text()

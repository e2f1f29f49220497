"""The deployment configuration: safe defaults, settings file, context overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from claude_jobs.settings import DEFAULT_MODEL, DEFAULT_PERMITTED_TOOLS
from infra.config import (
    WORKER_MEASURED_PEAK_RSS_MB,
    WORKER_MEASURED_PEAK_TMP_MB,
    InfraConfig,
)


def test_defaults_are_safe_for_production(tmp_path: Path) -> None:
    """Given no settings file and no context, the deployment is bounded and observable."""
    config = InfraConfig.load({}, settings_file=tmp_path / "absent.json")
    assert config.stage == "prod"
    assert config.permitted_tools == DEFAULT_PERMITTED_TOOLS
    assert config.default_model == DEFAULT_MODEL
    assert 0 < config.max_budget_usd_cap <= 10
    assert config.worker_reserved_concurrency is not None
    assert config.worker_max_concurrency <= config.worker_reserved_concurrency
    assert config.log_retention_days >= 30
    assert config.anthropic_secret_name is None  # the stack creates an empty secret


def test_context_overrides_the_settings_file(tmp_path: Path) -> None:
    """Given a settings file and CDK context (strings), context wins and values are typed."""
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"stage": "staging", "worker_memory_mb": 1536}))
    config = InfraConfig.load(
        {"worker_memory_mb": "3008", "permitted_tools": "Read, Grep", "log_retention_days": "60"},
        settings_file=settings,
    )
    assert config.stage == "staging"
    assert config.worker_memory_mb == 3008
    assert config.permitted_tools == ("Read", "Grep")
    assert config.log_retention_days == 60


def test_context_can_name_the_settings_file(tmp_path: Path) -> None:
    settings = tmp_path / "dev.json"
    settings.write_text(json.dumps({"stage": "dev", "worker_reserved_concurrency": None}))
    config = InfraConfig.load({"settings_file": str(settings)})
    assert config.stage == "dev"
    assert config.worker_reserved_concurrency is None


def test_none_clears_reserved_concurrency(tmp_path: Path) -> None:
    config = InfraConfig.load(
        {"worker_reserved_concurrency": "none"}, settings_file=tmp_path / "absent.json"
    )
    assert config.worker_reserved_concurrency is None


@pytest.mark.parametrize(
    "context",
    [
        {"worker_max_concurrency": "20", "worker_reserved_concurrency": "10"},
        {"worker_max_concurrency": "1"},
        {"log_retention_days": "10"},
        {"stage": "Prod!"},
        {"max_budget_usd_cap": "0"},
        {"unknown_setting": "x"},
    ],
)
def test_invalid_configuration_is_refused(tmp_path: Path, context: dict[str, str]) -> None:
    settings = tmp_path / "settings.json"
    if "unknown_setting" in context:
        settings.write_text(json.dumps(context))
        context = {}
    with pytest.raises(ValidationError):
        InfraConfig.load(context, settings_file=settings)


def test_worker_defaults_are_sized_from_the_measured_peak() -> None:
    """Given the measured peak of one job (infra.tools.measure_worker), the defaults keep at
    least twice that memory and far more than that /tmp."""
    config = InfraConfig()
    assert config.worker_memory_mb >= 2 * WORKER_MEASURED_PEAK_RSS_MB
    assert config.worker_ephemeral_storage_mb >= 100 * WORKER_MEASURED_PEAK_TMP_MB


def test_the_mcp_allowlist_is_url_prefixes() -> None:
    # Given the allowlist as a context value (comma-separated), it becomes the prefixes
    config = InfraConfig.model_validate(
        {"mcp_allowed_urls": "https://mcp.example.com/kb, https://tools.example.org/"}
    )
    assert config.mcp_allowed_urls == ("https://mcp.example.com/kb", "https://tools.example.org/")
    assert config.vault_prefix == "claude-jobs-prod/vault/"
    # And a prefix that is not an http(s) URL (or carries a user) is refused
    for bad in ("ftp://mcp.example.com/", "https://user:pw@mcp.example.com/", "kb"):
        with pytest.raises(ValidationError, match="MCP allowlist"):
            InfraConfig.model_validate({"mcp_allowed_urls": bad})
    assert InfraConfig().mcp_allowed_urls == ()

"""The shipped trigger config and templates load; bad ones fail at load time, not at 3 a.m."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from claude_jobs.triggers.config import EventTrigger, S3Trigger, load_config
from claude_jobs.triggers.templates import Template, TemplateError, TemplateStore

from .conftest import SHIPPED_CONFIG


def write_config(tmp_path: Path, triggers: list[dict[str, Any]], templates: dict[str, str]) -> Path:
    for ref, text in templates.items():
        name, version = ref.split("@")
        (tmp_path / "templates" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "templates" / name / f"{version}.md").write_text(text)
    path = tmp_path / "triggers.json"
    path.write_text(json.dumps({"version": 1, "triggers": triggers}))
    return path


S3 = {"name": "t", "kind": "s3", "tenant_id": "acme", "template": "doc@v1"}


def test_the_shipped_config_and_its_templates_load() -> None:
    # Given the config shipped with the trigger function
    # When it is loaded with its templates
    config = load_config(SHIPPED_CONFIG, TemplateStore(SHIPPED_CONFIG.parent / "templates"))
    # Then it has both kinds of trigger, and its schedule is complete for the CDK app
    assert config.s3 and config.events
    scheduled = [t for t in config.events if t.schedule]
    assert scheduled and all(t.rule for t in scheduled)


def test_an_unknown_placeholder_is_a_load_error(tmp_path: Path) -> None:
    # Given an S3 trigger whose template uses a placeholder S3 events do not provide
    path = write_config(tmp_path, [S3], {"doc@v1": "Read {{key}} for {{detail.user}}"})
    # When the config is loaded
    # Then loading fails and names the placeholder
    with pytest.raises(TemplateError, match=r"\{\{detail.user\}\}"):
        load_config(path, TemplateStore(tmp_path / "templates"))


def test_a_missing_template_version_is_a_load_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, [{**S3, "template": "doc@v2"}], {"doc@v1": "{{key}}"})
    with pytest.raises(TemplateError, match="doc@v2 not found"):
        load_config(path, TemplateStore(tmp_path / "templates"))


@pytest.mark.parametrize(
    "triggers",
    [
        pytest.param([S3, S3], id="duplicate-names"),
        pytest.param([{**S3, "options": {"max_turns": 0}}], id="options-out-of-bounds"),
        pytest.param([{**S3, "surprise": True}], id="unknown-field"),
        pytest.param([{**S3, "template": "../../etc/passwd@v1"}], id="template-traversal"),
        pytest.param([{**S3, "kind": "events"}], id="events-trigger-matching-everything"),
        pytest.param(
            [{**S3, "kind": "events", "source": "claude-jobs"}], id="completion-event-loop"
        ),
        pytest.param(
            [{**S3, "kind": "events", "source": "x", "schedule": "rate(1 day)"}],
            id="schedule-without-rule",
        ),
        pytest.param(
            [{**S3, "kind": "events", "source": "x", "detail_options": ["prompt"]}],
            id="detail-option-not-an-option",
        ),
    ],
)
def test_an_invalid_config_is_a_load_error(tmp_path: Path, triggers: list[dict[str, Any]]) -> None:
    path = write_config(tmp_path, triggers, {"doc@v1": "{{key}}"})
    with pytest.raises(ValidationError):
        load_config(path)


def test_matching_rules() -> None:
    # Given an S3 trigger on the inbox and an events trigger on a schedule's rule
    s3 = S3Trigger.model_validate({**S3, "prefix": "in/", "suffix": ".txt"})
    schedule = EventTrigger.model_validate({**S3, "kind": "events", "rule": "*-nightly"})
    # Then they match what they name, and nothing else
    assert s3.matches("inbox", "in/a.txt", inbox_bucket="inbox")
    assert not s3.matches("inbox", "in/a.pdf", inbox_bucket="inbox")
    assert not s3.matches("other", "in/a.txt", inbox_bucket="inbox")
    assert not s3.matches("inbox", "in/a.txt", inbox_bucket="")  # no inbox configured
    assert schedule.matches("aws.events", "Scheduled Event", ["prod-nightly"])
    assert not schedule.matches("aws.events", "Scheduled Event", ["prod-hourly"])
    assert not schedule.matches("aws.events", "Scheduled Event", [])


def test_rendering_is_one_pass() -> None:
    # Given a template and a value that itself looks like a placeholder
    template = Template("t", 1, "Key: {{ key }} / {{bucket}}")
    values = {"key": "{{bucket}}", "bucket": "b"}
    # When it is rendered
    # Then the value appears verbatim, not expanded again
    assert template.render(values.__getitem__) == "Key: {{bucket}} / b"

"""The deployment's triggers: a versioned JSON file shipped with the trigger function.

Validated in full at load time, templates included, so a bad config fails the deployment's
tests (and the function's cold start) instead of an event at 3 a.m.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..models import JobOptions, MetadataKey, MetadataValue
from .templates import REF_RE, TemplateStore

#: Metadata keys the trigger adds to every job it creates (they win over the config's).
S3_METADATA_KEYS = ("trigger", "s3_bucket", "s3_key")
EVENT_METADATA_KEYS = ("trigger", "event_id", "event_source", "event_detail_type")
#: Room left in the 16-key metadata limit for the trigger's own keys.
MAX_CONFIG_METADATA = 16 - max(len(S3_METADATA_KEYS), len(EVENT_METADATA_KEYS))

S3_PLACEHOLDERS = frozenset({"bucket", "key", "size", "text", "file", "version_id", "trigger"})
EVENT_PLACEHOLDERS = frozenset({"detail", "source", "detail_type", "event_id", "time", "trigger"})

TriggerName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
TemplateRef = Annotated[str, StringConstraints(pattern=REF_RE.pattern)]


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TriggerName
    description: str = ""
    enabled: bool = True
    tenant_id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^:]+$")]
    template: TemplateRef
    system_prompt: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    options: JobOptions = Field(default_factory=JobOptions)
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict, max_length=MAX_CONFIG_METADATA
    )
    webhook_url: str | None = None


class S3Trigger(_Trigger):
    """An object created in `bucket` (default: the deployment's inbox) under `prefix`."""

    kind: Literal["s3"]
    bucket: str | None = None
    prefix: str = ""
    suffix: str = ""
    #: Larger objects are refused (dead-lettered): the worker copies the object into /tmp.
    max_object_bytes: int = Field(50 * 1024 * 1024, ge=1, le=512 * 1024 * 1024)

    def matches(self, bucket: str, key: str, inbox_bucket: str) -> bool:
        wanted = self.bucket or inbox_bucket
        return (
            self.enabled
            and bool(wanted)
            and bucket == wanted
            and key.startswith(self.prefix)
            and key.endswith(self.suffix)
        )

    def allows_placeholder(self, name: str) -> bool:
        return name in S3_PLACEHOLDERS


class EventTrigger(_Trigger):
    """An EventBridge event: matched on `source` / `detail_type`, or on the name of the rule
    (a schedule) listed in the event's `resources` (`rule` is a glob, e.g. `*-nightly`)."""

    kind: Literal["events"]
    source: str | None = None
    detail_type: str | None = None
    rule: str | None = None
    #: For the CDK app: a schedule (`rate(…)`, `cron(…)`) for a rule named by `rule`.
    schedule: str | None = None
    #: JobOptions fields an event may set in `detail.job`; `[]` = none.
    detail_options: list[str] = Field(default_factory=lambda: sorted(JobOptions.model_fields))
    #: Tools `detail.job.allowed_tools` may ask for; None = the deployment's permitted set.
    detail_tools: list[str] | None = None

    @model_validator(mode="after")
    def _selective(self) -> EventTrigger:
        if not (self.source or self.detail_type or self.rule):
            raise ValueError("an events trigger needs source, detail_type or rule")
        if self.schedule and not self.rule:
            raise ValueError("a schedule needs the rule name it is created under")
        if self.source == "claude-jobs" and not self.detail_type:
            raise ValueError(
                "matching every completion event (source claude-jobs) would chain jobs "
                "without end; name a detail_type"
            )
        unknown = set(self.detail_options) - set(JobOptions.model_fields)
        if unknown:
            raise ValueError(f"detail_options names unknown option(s): {sorted(unknown)}")
        return self

    def matches(self, source: str, detail_type: str, rule_names: Sequence[str]) -> bool:
        if not self.enabled:
            return False
        if self.source is not None and source != self.source:
            return False
        if self.detail_type is not None and detail_type != self.detail_type:
            return False
        return self.rule is None or any(fnmatch.fnmatchcase(r, self.rule) for r in rule_names)

    def allows_placeholder(self, name: str) -> bool:
        return name in EVENT_PLACEHOLDERS or name.startswith("detail.")

    def event_pattern(self) -> dict[str, Any] | None:
        """The EventBridge pattern a rule for this trigger uses (None for a schedule)."""
        pattern: dict[str, Any] = {}
        if self.source:
            pattern["source"] = [self.source]
        if self.detail_type:
            pattern["detail-type"] = [self.detail_type]
        return pattern or None


Trigger = Annotated[S3Trigger | EventTrigger, Field(discriminator="kind")]


class TriggersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(1, ge=1)
    triggers: list[Trigger] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> TriggersConfig:
        names = [t.name for t in self.triggers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"trigger names must be unique: {duplicates}")
        return self

    @property
    def s3(self) -> list[S3Trigger]:
        return [t for t in self.triggers if isinstance(t, S3Trigger)]

    @property
    def events(self) -> list[EventTrigger]:
        return [t for t in self.triggers if isinstance(t, EventTrigger)]

    def check_templates(self, templates: TemplateStore) -> None:
        """Every template exists and uses only placeholders its trigger's kind provides."""
        for trigger in self.triggers:
            templates.get(trigger.template).check(trigger.allows_placeholder)


def load_config(path: Path, templates: TemplateStore | None = None) -> TriggersConfig:
    """Read and validate the config; with `templates`, check every template it names.

    Raises ValueError (pydantic's ValidationError, TemplateError) or OSError."""
    config = TriggersConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    if templates is not None:
        config.check_templates(templates)
    return config

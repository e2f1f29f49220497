"""The trigger Lambda function: its composition root and its handler.

    function = TriggerFunction(default_config=Path(__file__).with_name("triggers.json"))
    lambda_handler = function.handler

The config and templates are read on the first invocation (a broken config fails it loudly);
tests and the local stack inject their own container with `function.container = …`.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

from ..observability import count, instrumented
from ..wiring import Container, ContainerHolder
from .aws import S3InboxObjects, SqsDeadLetters
from .config import load_config
from .templates import TemplateStore
from .trigger_service import TriggerService


class TriggerFunction(ContainerHolder):
    derived = ("service",)

    def __init__(self, container: Container | None = None, default_config: Path | None = None):
        super().__init__(container)
        self._default_config = default_config
        self._instrumented = instrumented(self._handle)

    @property
    def config_path(self) -> Path:
        configured = self.container.settings.triggers_config
        if configured:
            return Path(configured)
        if self._default_config is None:
            raise ValueError("TRIGGERS_CONFIG is not set")
        return self._default_config

    @cached_property
    def service(self) -> TriggerService:
        container = self.container
        settings = container.settings
        path = self.config_path
        templates = TemplateStore(path.parent / "templates")
        return TriggerService(
            load_config(path, templates),
            templates,
            container.job_service,
            S3InboxObjects(container.client("s3")),
            SqsDeadLetters(container.client("sqs"), settings.trigger_dlq_url),
            inbox_bucket=settings.inbox_bucket,
        )

    def handler(self, event: Any, context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: Any, context: Any) -> dict[str, Any]:
        outcomes = self.service.handle(event)
        for outcome in outcomes:
            count(f"Trigger{outcome.status.capitalize()}")
        return {"outcomes": [asdict(o) for o in outcomes]}

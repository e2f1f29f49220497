"""The reconciler Lambda function: an EventBridge schedule → one reconciler run (re-drives,
slot recounts, expired approvals)."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

from ..adapters.reconcile_table import DynamoReconcileStore, SqsJobWaker
from ..observability import instrumented
from ..wiring import Container, ContainerHolder
from .expiry import ApprovalExpiry
from .reconciler import Reconciler


class ReconcilerFunction(ContainerHolder):
    derived = ("reconciler",)

    def __init__(self, container: Container | None = None) -> None:
        super().__init__(container)
        self._instrumented = instrumented(self._handle)

    @cached_property
    def reconciler(self) -> Reconciler:
        container = self.container
        settings = container.settings
        return Reconciler(
            DynamoReconcileStore(container.client("dynamodb"), settings.jobs_table),
            SqsJobWaker(container.client("sqs"), settings.jobs_queue_url),
            clock=time.time,
            grace_seconds=settings.reconcile_grace_seconds,
            expirer=ApprovalExpiry(container.job_repository, container.job_documents),
        )

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        outcome = self.reconciler.run()
        return {
            "redriven": outcome.redriven,
            "repaired": outcome.repaired,
            "drifting": outcome.drifting,
            "expired": outcome.expired,
        }

"""The one observability module: Powertools Logger, Metrics and Tracer, built on first use.

Nothing is built at import time. Each factory returns one instance per process, configured from
the Powertools environment variables the CDK app sets (`POWERTOOLS_SERVICE_NAME`,
`POWERTOOLS_METRICS_NAMESPACE`, `POWERTOOLS_TRACE_DISABLED`, `POWERTOOLS_LOG_LEVEL`).

The Tracer (and with it `aws_xray_sdk`) is imported only by `get_tracer()`, so functions that do
not trace do not pay for it at cold start.

Never log secrets: the API never passes headers, API keys or request bodies to the logger.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools.logging import Logger
    from aws_lambda_powertools.metrics import Metrics
    from aws_lambda_powertools.tracing import Tracer

DEFAULT_SERVICE = "claude-jobs"
DEFAULT_NAMESPACE = "ClaudeJobs"

_lock = threading.Lock()
_instances: dict[str, Any] = {}


def _service() -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE


def get_logger() -> Logger:
    """The process's structured JSON logger."""
    with _lock:
        if "logger" not in _instances:
            from aws_lambda_powertools.logging import Logger

            _instances["logger"] = Logger(service=_service())
        logger: Logger = _instances["logger"]
        return logger


def get_metrics() -> Metrics:
    """The process's CloudWatch EMF metrics (flushed by `flush_metrics()`)."""
    with _lock:
        if "metrics" not in _instances:
            from aws_lambda_powertools.metrics import Metrics

            namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
            _instances["metrics"] = Metrics(namespace=namespace, service=_service())
        metrics: Metrics = _instances["metrics"]
        return metrics


def tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in {"1", "true"}


def get_tracer() -> Tracer:
    """The process's X-Ray tracer. Imports `aws_xray_sdk`: call it only when tracing."""
    with _lock:
        if "tracer" not in _instances:
            from aws_lambda_powertools.tracing import Tracer

            _instances["tracer"] = Tracer(service=_service(), disabled=not tracing_enabled())
        tracer: Tracer = _instances["tracer"]
        return tracer


def count(name: str, value: float = 1) -> None:
    """Add one count metric (emitted at the next `flush_metrics()`)."""
    from aws_lambda_powertools.metrics import MetricUnit

    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def flush_metrics() -> None:
    """Emit the metrics recorded so far, if any were (no EMF line otherwise)."""
    metrics = _instances.get("metrics")
    if metrics is not None and metrics.metric_set:
        metrics.flush_metrics()

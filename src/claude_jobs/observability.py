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
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from aws_lambda_powertools.logging import Logger
    from aws_lambda_powertools.metrics import Metrics
    from aws_lambda_powertools.tracing import Tracer

DEFAULT_SERVICE = "claude-jobs"
DEFAULT_NAMESPACE = "ClaudeJobs"

_lock = threading.Lock()
_instances: dict[str, Any] = {}

Result = TypeVar("Result")


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


class _Deferred:
    """Stands for the process's logger until it is first used."""

    def __getattr__(self, name: str) -> Any:
        return getattr(get_logger(), name)


def deferred_logger() -> Logger:
    """The process's logger, for a module-level `log = deferred_logger()`: the module imports
    without building it (or reading the environment); the first call through it does."""
    return cast("Logger", _Deferred())


def get_metrics() -> Metrics:
    """The process's CloudWatch EMF metrics (flushed when an `instrumented` handler ends)."""
    with _lock:
        if "metrics" not in _instances:
            from aws_lambda_powertools.metrics import Metrics

            namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
            _instances["metrics"] = Metrics(namespace=namespace, service=_service())
            # An invocation that counted nothing emits no metrics line, which is not a fault
            # (`log_metrics` would warn about it on every such invocation).
            warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
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


def instrumented(handler: Callable[..., Result]) -> Callable[..., Result]:
    """A Lambda handler under Powertools' `Logger.inject_lambda_context(clear_state=True)`
    (every log line carries the Lambda context's keys and nothing of the previous invocation)
    and `Metrics.log_metrics` (what the invocation counted is flushed when it ends, whether it
    returns or raises). Arguments after `event, context` are passed through. The logger and the
    metrics, and with them the wrapped handler, are built on the first invocation."""
    wrapped: Callable[..., Result] | None = None

    def invoke(event: Any, context: Any, *args: Any, **kwargs: Any) -> Result:
        nonlocal wrapped
        if wrapped is None:
            # log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry prompts
            # and API keys.
            wrapped = get_logger().inject_lambda_context(clear_state=True, log_event=False)(
                get_metrics().log_metrics(handler)
            )
        return wrapped(event, context, *args, **kwargs)

    return invoke


def count(name: str, value: float = 1) -> None:
    """Add one count metric (emitted when the invocation ends)."""
    from aws_lambda_powertools.metrics import MetricUnit

    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)

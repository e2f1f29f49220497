"""The one observability module: Powertools Logger, Metrics and Tracer, built on first use.

Nothing is built at import time. Each factory returns one instance per process, configured from
the Powertools environment variables the CDK app sets (`POWERTOOLS_SERVICE_NAME`,
`POWERTOOLS_METRICS_NAMESPACE`, `POWERTOOLS_TRACE_DISABLED`, `POWERTOOLS_LOG_LEVEL`).

Tracing: the CDK app turns X-Ray active tracing on for every function and the API stage, so
API Gateway and Lambda record each request's and invocation's segments (init included) with no
SDK in the function. The worker adds Powertools' Tracer (`instrumented(..., traced=True)`):
its invocation and every AWS call it makes are subsegments. The zip functions do not: importing
`aws_xray_sdk` and building its recorder costs more CPU at a cold start than the API functions'
whole budget over a bare boto3 client (`make bench`), and the layer would have to ship it. The
Tracer is imported only by `get_tracer()`.

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
    """The process's X-Ray tracer, patching botocore: every AWS call after it exists is a
    subsegment. Imports `aws_xray_sdk` (also when tracing is disabled), which the worker image
    ships and the layer does not: only the worker traces (see the module's docstring)."""
    with _lock:
        if "tracer" not in _instances:
            from aws_lambda_powertools.tracing import Tracer

            _instances["tracer"] = Tracer(
                service=_service(), disabled=not tracing_enabled(), patch_modules=["botocore"]
            )
        tracer: Tracer = _instances["tracer"]
        return tracer


def instrumented(handler: Callable[..., Result], *, traced: bool = False) -> Callable[..., Result]:
    """A Lambda handler under Powertools' `Logger.inject_lambda_context(clear_state=True)`
    (every log line carries the Lambda context's keys and nothing of the previous invocation)
    and `Metrics.log_metrics` (what the invocation counted is flushed when it ends, whether it
    returns or raises). `traced`: also under `Tracer.capture_lambda_handler` (the worker only;
    see `get_tracer`). Keyword arguments are passed through (Tracer's wrapper drops extra
    positional ones). The logger and the
    metrics, and with them the wrapped handler, are built on the first invocation."""
    wrapped: Callable[..., Result] | None = None

    def invoke(event: Any, context: Any, **kwargs: Any) -> Result:
        nonlocal wrapped
        if wrapped is None:
            # log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry prompts
            # and API keys.
            inner = get_metrics().log_metrics(handler)
            if traced:
                inner = get_tracer().capture_lambda_handler(inner, capture_response=False)
            wrapped = get_logger().inject_lambda_context(clear_state=True, log_event=False)(inner)
        return wrapped(event, context, **kwargs)

    return invoke


def count(name: str, value: float = 1) -> None:
    """Add one count metric (emitted when the invocation ends)."""
    from aws_lambda_powertools.metrics import MetricUnit

    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)

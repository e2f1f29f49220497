"""A minimal Lambda runtime for the local stack: handler loading, warm environments, context.

Lambda runs one invocation per execution environment at a time and starts another environment
(a cold start) when all are busy. The local stack does the same with module instances: each
environment is a fresh load of `functions/<name>/handler.py`, so module-level state (a
Powertools resolver's current event, a container of clients) is never shared by two
concurrent invocations.

Each function is its entry in the definition table (:mod:`claude_jobs.definitions`): its
handler, its memory (what the context reports) and its timeout, which is enforced as Lambda
does: an invocation still running when it is up fails with "Task timed out", and its execution
environment is not used again.
"""

from __future__ import annotations

import contextvars
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from claude_jobs.definitions import Function

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

Handler = Callable[[dict[str, Any], Any], Any]

_instance_ids = itertools.count(1)


def default_functions_dir() -> Path:
    """`functions/` of the checkout this package is installed from (editable install)."""
    return Path(__file__).resolve().parents[3] / "functions"  # …/src/claude_jobs_tools/local


@dataclass
class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.invoked_function_arn = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


class FunctionNotFoundError(RuntimeError):
    pass


class EnvironmentRetired(Exception):
    """The function ended its execution environment (on Lambda: its process exited)."""


class InvocationKilled(BaseException):
    """The invocation's process died mid-run (on Lambda: a crash, an out-of-memory kill).

    The local stack emulates it by raising this asynchronously in the invocation's thread
    (:func:`kill_invocation`): a BaseException, so no `except Exception` of the function's
    code sees it and nothing after that point runs but `finally` clean-ups. The invocation
    answers nothing: its SQS message is neither deleted nor reported, and comes back after
    the visibility timeout, as after a crash."""


def kill_invocation(thread_id: int) -> bool:
    """Raise InvocationKilled in the thread `thread_id` at its next Python instruction (a
    thread blocked in a system call gets it when the call returns). False when there is no
    such thread."""
    import ctypes

    found = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(InvocationKilled)
    )
    return bool(found)


class FunctionTimedOut(RuntimeError):
    """The invocation was still running when the function's timeout was up."""


def _retire() -> None:
    raise EnvironmentRetired("the function retired its execution environment")


class _FunctionCode(importlib.abc.MetaPathFinder):
    """Finds top-level modules in the directory of the function the current thread is loading
    (as Lambda puts the function's directory first on sys.path), and nothing for any other
    thread. Installed once, first on sys.meta_path, when this module is imported."""

    def __init__(self) -> None:
        self._loading = threading.local()

    @contextmanager
    def importable(self, code_dir: Path) -> Iterator[None]:
        previous = getattr(self._loading, "code_dir", None)
        self._loading.code_dir = str(code_dir)
        try:
            yield
        finally:
            self._loading.code_dir = previous

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        code_dir = getattr(self._loading, "code_dir", None)
        if code_dir is None or path is not None:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [code_dir])


_FUNCTION_CODE = _FunctionCode()
# Inserting (never removing) is safe while other threads import: a finder list that grows
# under a reader makes it look at an entry twice, never skip one.
sys.meta_path.insert(0, _FUNCTION_CODE)


def load_handler(spec: Function, functions_dir: Path) -> Handler:
    """A fresh instance of the function's handler module (one execution environment)."""
    code_dir = functions_dir / spec.name
    path = code_dir / f"{spec.handler_module}.py"
    if not path.is_file():
        raise FunctionNotFoundError(f"{path} does not exist")
    name = f"_claude_jobs_local_{spec.name}_{next(_instance_ids)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:  # pragma: no cover
        raise FunctionNotFoundError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    # As in Lambda, the function's own directory is importable while its code loads; modules
    # imported from it are dropped afterwards so two functions' `app.py` never collide. It is
    # importable for this thread only (`_FunctionCode`): sys.path is never changed, so an
    # import in another thread meanwhile cannot miss site-packages (a list another thread
    # removes an entry from skips the entry after it).
    before = set(sys.modules)
    try:
        with _FUNCTION_CODE.importable(code_dir):
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
    finally:
        for added in set(sys.modules) - before - {name}:
            origin = getattr(sys.modules.get(added), "__file__", None) or ""
            if origin.startswith(str(code_dir)):
                sys.modules.pop(added, None)
    handler = getattr(module, spec.handler_attr, None)
    if not callable(handler):
        raise FunctionNotFoundError(f"{path} has no callable {spec.handler_attr}")
    # A function that can retire its environment exits its process on Lambda; here the
    # environment is dropped instead (the pool starts a fresh one for the next invocation).
    function = getattr(module, "function", None)
    if function is not None and hasattr(function, "retire"):
        function.retire = _retire
    return _bound(module, handler)


def shut_down(handler: Handler) -> None:
    """What Lambda's end of an execution environment does to its processes: the function's
    `shutdown()` (the worker stops its warm CLI), when it has one. Never raises."""
    function = getattr(getattr(handler, "module", None), "function", None)
    shutdown = getattr(function, "shutdown", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception as exc:  # the environment is gone either way
            log.warning("an environment's shutdown failed: %s", type(exc).__name__)


def _bound(module: ModuleType, handler: Callable[..., Any]) -> Handler:
    def invoke(event: dict[str, Any], context: Any) -> Any:
        return handler(event, context)

    invoke.module = module  # type: ignore[attr-defined]  # keeps the instance alive
    return invoke


class FunctionPool:
    """Warm execution environments of one function; a new one starts when all are busy."""

    def __init__(self, spec: Function, functions_dir: Path) -> None:
        self.spec = spec
        self._functions_dir = functions_dir
        self._idle: list[Handler] = []
        self._lock = threading.Lock()
        self.cold_starts = 0
        self.retired = 0
        self.timed_out = 0

    def warm_up(self, count: int = 1) -> None:
        """Load `count` environments now: a broken handler fails the stack's start, not a
        request, and the consumers that start next find their environments loaded."""
        loaded = [load_handler(self.spec, self._functions_dir) for _ in range(count)]
        with self._lock:
            self.cold_starts += len(loaded)
            self._idle.extend(loaded)

    def drop_idle(self) -> int:
        """Forget the idle execution environments (the next invocations start cold), as a
        new deployment or a restart does. Returns how many were dropped."""
        with self._lock:
            dropped, self._idle = self._idle, []
        for handler in dropped:
            shut_down(handler)
        return len(dropped)

    @contextmanager
    def environment(self) -> Iterator[Handler]:
        with self._lock:
            handler = self._idle.pop() if self._idle else None
        if handler is None:
            handler = load_handler(self.spec, self._functions_dir)
            with self._lock:
                self.cold_starts += 1
        try:
            yield handler
        except (EnvironmentRetired, InvocationKilled):
            with self._lock:
                self.retired += 1  # dropped, not returned to the idle ones
            shut_down(handler)
            raise
        except FunctionTimedOut:
            with self._lock:
                self.timed_out += 1  # still busy: dropped, as Lambda resets it
            raise
        except BaseException:
            with self._lock:
                self._idle.append(handler)
            raise
        else:
            with self._lock:
                self._idle.append(handler)

    def invoke(self, event: dict[str, Any], *, request_id: str | None = None) -> Any:
        """Run the handler once with a fresh context, in an idle environment."""
        context = LambdaContext(
            function_name=self.spec.name,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_seconds=self.spec.timeout_seconds,
            aws_request_id=request_id or str(uuid.uuid4()),
        )
        with self.environment() as handler:
            return _within(self.spec.timeout_seconds, handler, event, context)


def _within(timeout_seconds: float, handler: Handler, event: dict[str, Any], context: Any) -> Any:
    """`handler(event, context)` on a thread of its own, given up on after the timeout (a
    thread cannot be stopped: it runs on unobserved, and its environment is dropped)."""
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()
    run = contextvars.copy_context().run

    def invocation() -> None:
        try:
            outcome.append((True, run(handler, event, context)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            done.set()

    thread = threading.Thread(
        target=invocation, name=f"{threading.current_thread().name}-invoke", daemon=True
    )
    thread.start()
    if not done.wait(timeout_seconds):
        raise FunctionTimedOut(f"Task timed out after {timeout_seconds:.2f} seconds")
    returned, value = outcome[0]
    if returned:
        return value
    raise value

"""The local stack's Lambda runtime: warm environments, retiring one, and the definition
table's limits (the context's memory and remaining time, the timeout enforced)."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from claude_jobs.definitions import FUNCTIONS as DEFINED
from claude_jobs_tools.local.runtime import (
    EnvironmentRetired,
    FunctionPool,
    FunctionTimedOut,
    InvocationKilled,
    kill_invocation,
)
from claude_jobs_tools.local.stack import FUNCTIONS, OPTIONAL_FUNCTIONS

HANDLER = """
import importlib
import sys
import threading
import time

class Function:
    def retire(self):
        import os
        os._exit(75)  # what Lambda does; the local runtime must replace it

    def handler(self, event, context):
        if event.get("retire"):
            self.retire()
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("spin"):  # a run that catches every Exception, as the worker's code does
            deadline = time.monotonic() + event["spin"]
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.01)
                except Exception:
                    return {"caught": True}
        return {
            "instance": id(self),
            "memory": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }

function = Function()
lambda_handler = function.handler
"""


def _pool(tmp_path: Path, timeout_seconds: int | None = None) -> FunctionPool:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(HANDLER)
    spec = replace(DEFINED["status"], name="fn")
    if timeout_seconds is not None:
        spec = replace(spec, timeout_seconds=timeout_seconds)
    return FunctionPool(spec, tmp_path)


def test_a_retired_environment_is_dropped_and_the_next_invocation_starts_a_fresh_one(
    tmp_path: Path,
) -> None:
    # Given a function whose handler can retire its execution environment
    pool = _pool(tmp_path)
    first = pool.invoke({})["instance"]
    assert pool.invoke({})["instance"] == first  # warm: the same environment serves again
    # When an invocation retires its environment
    with pytest.raises(EnvironmentRetired):
        pool.invoke({"retire": True})
    # Then the process goes on, that environment is gone, and the next call is a cold start
    assert pool.retired == 1
    assert pool.invoke({})["instance"] != first and pool.cold_starts == 2


def test_the_context_reports_the_functions_memory_and_time_left(tmp_path: Path) -> None:
    # Given a function of the table, as the local stack runs it
    pool = _pool(tmp_path)
    # When it is invoked
    answer = pool.invoke({})
    # Then its context says what the table gives it
    assert answer["memory"] == DEFINED["status"].memory_mb
    assert 0 < DEFINED["status"].timeout_seconds * 1000 - answer["remaining_ms"] < 1000


def test_an_invocation_past_its_timeout_fails_and_its_environment_is_dropped(
    tmp_path: Path,
) -> None:
    # Given a function with a 1 s timeout
    pool = _pool(tmp_path, timeout_seconds=1)
    first = pool.invoke({})["instance"]
    # When an invocation runs longer
    started = time.monotonic()
    with pytest.raises(FunctionTimedOut, match=r"Task timed out after 1\.00 seconds"):
        pool.invoke({"sleep": 3})
    # Then the caller hears of it when the timeout is up, not when the handler ends
    assert time.monotonic() - started < 2.5
    # And the environment it ran in is not used again
    assert pool.timed_out == 1
    assert pool.invoke({})["instance"] != first


def test_the_local_stack_runs_the_functions_of_the_definition_table() -> None:
    # The stack's functions are the table's entries themselves: same handler, memory, timeout
    assert set(FUNCTIONS) | OPTIONAL_FUNCTIONS == set(DEFINED)
    assert all(FUNCTIONS[name] is DEFINED[name] for name in FUNCTIONS)


def test_a_killed_invocation_ends_uncaught_and_its_environment_is_dropped(
    tmp_path: Path,
) -> None:
    import threading

    # Given a warm environment running a long invocation that catches every Exception
    pool = _pool(tmp_path)
    first = pool.invoke({})["instance"]
    outcome: list[BaseException | dict[str, object]] = []

    def invoke() -> None:
        try:
            outcome.append(pool.invoke({"spin": 30}))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=invoke, name="ledger-caller")
    caller.start()
    deadline = time.monotonic() + 10
    running: list[threading.Thread] = []
    while not running and time.monotonic() < deadline:
        time.sleep(0.01)
        running = [t for t in threading.enumerate() if t.name == "ledger-caller-invoke"]
    (invocation,) = running
    # When it is killed
    assert invocation.ident is not None and kill_invocation(invocation.ident)
    caller.join(timeout=10)
    # Then the invocation ended with InvocationKilled, which its `except Exception` did not see
    (ended,) = outcome
    assert isinstance(ended, InvocationKilled)
    # And its environment is not used again
    assert pool.retired == 1
    assert pool.invoke({})["instance"] != first or pool.cold_starts == 2
    # And dropping the idle environments makes the next invocation start cold
    assert pool.drop_idle() == 1
    pool.invoke({})
    assert pool.cold_starts == 3


SIBLING_HANDLER = """
import sys

PATH_WHILE_LOADING = list(sys.path)
import fn_sibling

def lambda_handler(event, context):
    return {"sibling": fn_sibling.VALUE, "path": PATH_WHILE_LOADING}
"""


def test_a_function_imports_from_its_directory_without_changing_sys_path(
    tmp_path: Path,
) -> None:
    # Given a function whose handler imports a module that sits next to it, and records
    # sys.path while it loads
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(SIBLING_HANDLER)
    (tmp_path / "fn" / "fn_sibling.py").write_text("VALUE = 'next to the handler'\n")
    pool = FunctionPool(replace(DEFINED["status"], name="fn"), tmp_path)
    path_before = list(sys.path)
    # When it is invoked (loaded cold)
    answer = pool.invoke({})
    # Then its sibling module was importable while it loaded
    assert answer["sibling"] == "next to the handler"
    # and sys.path, which other threads import through, never changed (a list another thread
    # removes an entry from under an import skips the entry after it: site-packages)
    assert answer["path"] == path_before == sys.path
    # and afterwards the sibling is neither loaded nor importable by anyone else
    assert "fn_sibling" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("fn_sibling")


def test_functions_load_while_other_threads_import(tmp_path: Path) -> None:
    # Given a thread that keeps importing a package from site-packages afresh
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(SIBLING_HANDLER)
    (tmp_path / "fn" / "fn_sibling.py").write_text("VALUE = 1\n")
    spec = replace(DEFINED["status"], name="fn")
    stop = threading.Event()
    failures: list[BaseException] = []

    def importer() -> None:
        while not stop.is_set():
            for name in [m for m in list(sys.modules) if m.startswith("idna")]:
                sys.modules.pop(name, None)
            try:
                importlib.import_module("idna")
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=importer)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave at almost every bytecode
    for thread in threads:
        thread.start()
    try:
        # When functions load cold environments meanwhile, many times
        for _ in range(200):
            FunctionPool(spec, tmp_path).invoke({})
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(switch)
    # Then no import elsewhere failed
    assert failures == []

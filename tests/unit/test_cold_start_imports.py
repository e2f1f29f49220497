"""What an API function's cold start loads (issue 28), without a clock: a fresh interpreter
imports the function's handler as Lambda does (its folder on `sys.path`, the region set) and
reports `sys.modules`. Heavy modules that no ordinary request needs must be absent; what every
request needs must be there (loaded at init, not on the first request)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Loaded by no API function's import: Powertools' event handlers (the package's `__init__`
#: loads every resolver it has, asyncio with AppSync's, and the event classes of every AWS event
#: source; the API routes with `claude_jobs.api.resolver`), uploads and session transcripts
#: (loaded by the requests that use them). `s3transfer.manager` is not among them: `import
#: boto3` loads it (`boto3.compat`), in the baseline as in the functions.
ABSENT = (
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.data_classes",
    "asyncio",
    "claude_jobs.uploads",
    "claude_jobs.adapters.uploads",
    "claude_jobs.adapters.session_store",
)

#: What every request needs, imported at init.
PRESENT = (
    "boto3",
    "pydantic",
    "claude_jobs.api.resolver",
    "claude_jobs.models",
    "claude_jobs.job_service",
    "claude_jobs.adapters.jobs_table",
)

#: Built at import: every request needs it. Every other model of the project that a handler's
#: import defines builds its validator on first use (`claude_jobs.model_base.Model`, pydantic's
#: `defer_build`), so that a request pays only for the models it uses.
BUILT_AT_IMPORT = ("claude_jobs.settings.Settings",)

PROBE = """
import json, sys
sys.path.insert(0, {folder!r})
import handler
{after}
"""
MODULES = "print(json.dumps(sorted(sys.modules)))"


def _after_import(function: str, after: str) -> Any:
    """What `after` prints (JSON, on its last line) once the function's handler is imported."""
    env = {
        **{k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}},
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    code = PROBE.format(folder=str(ROOT / "functions" / function), after=after)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.splitlines()[-1])


def _modules_after(function: str) -> set[str]:
    return set(_after_import(function, MODULES))


#: Prints each pydantic model the project defined so far, and whether it is built.
MODELS = """
from pydantic import BaseModel
found, todo = {}, [BaseModel]
while todo:
    for sub in todo.pop().__subclasses__():
        todo.append(sub)
        if sub.__module__.startswith("claude_jobs."):
            found[f"{sub.__module__}.{sub.__qualname__}"] = bool(sub.__pydantic_complete__)
print(json.dumps(found))
"""


@pytest.mark.parametrize("function", ["submit", "status"])
def test_the_handler_import_leaves_out_what_no_request_needs(function: str) -> None:
    # Given a fresh interpreter, When it imports the function's handler as Lambda does
    loaded = _modules_after(function)
    # Then nothing heavy that no ordinary request needs is loaded, and the rest is
    assert sorted(m for m in ABSENT if m in loaded) == []
    assert sorted(m for m in PRESENT if m not in loaded) == []


@pytest.mark.parametrize("function", ["submit", "status"])
def test_the_handler_import_builds_no_model_a_request_may_not_use(function: str) -> None:
    # Given a fresh interpreter, When it imports the function's handler as Lambda does
    models: dict[str, bool] = _after_import(function, MODELS)
    # Then it has defined the request, job and view models, and built none of them but Settings
    assert {"claude_jobs.models.JobRequest", "claude_jobs.models.JobView"} <= set(models)
    assert sorted(name for name, built in models.items() if built) == list(BUILT_AT_IMPORT)

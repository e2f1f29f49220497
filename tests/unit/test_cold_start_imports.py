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

import pytest

from claude_jobs.api.resolver import defer_package_init

ROOT = Path(__file__).resolve().parents[2]

#: Loaded by no API function's import: the other Powertools resolvers (AppSync brings all of
#: asyncio), the data classes of other event sources, uploads and session transcripts (loaded
#: by the requests that use them).
ABSENT = (
    "asyncio",
    "aws_lambda_powertools.event_handler.appsync",
    "aws_lambda_powertools.event_handler.bedrock_agent",
    "aws_lambda_powertools.event_handler.events_appsync",
    "aws_lambda_powertools.event_handler.http_resolver",
    "aws_lambda_powertools.utilities.data_classes.sqs_event",
    "aws_lambda_powertools.utilities.data_classes.kafka_event",
    "claude_jobs.uploads",
    "claude_jobs.adapters.uploads",
    "claude_jobs.adapters.session_store",
)

#: What every request needs, imported at init.
PRESENT = (
    "boto3",
    "pydantic",
    "aws_lambda_powertools.event_handler.api_gateway",
    "claude_jobs.models",
    "claude_jobs.job_service",
    "claude_jobs.adapters.jobs_table",
)

PROBE = """
import json, sys
sys.path.insert(0, {folder!r})
import handler
{after}
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(function: str, after: str = "") -> set[str]:
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
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("function", ["submit", "status"])
def test_the_handler_import_leaves_out_what_no_request_needs(function: str) -> None:
    # Given a fresh interpreter, When it imports the function's handler as Lambda does
    loaded = _modules_after(function)
    # Then nothing heavy that no ordinary request needs is loaded, and the rest is
    assert sorted(m for m in ABSENT if m in loaded) == []
    assert sorted(m for m in PRESENT if m not in loaded) == []


def test_the_rest_of_powertools_event_handler_still_imports_after_the_handler() -> None:
    # Given a process that imported a handler (the package's __init__ deferred)
    # When other code asks the package for names only its __init__ defines
    loaded = _modules_after(
        "status",
        after=(
            "from aws_lambda_powertools.event_handler import AppSyncResolver, Response\n"
            "from aws_lambda_powertools.utilities.data_classes import SQSEvent\n"
            "from aws_lambda_powertools.event_handler.api_gateway import Response as R\n"
            "assert Response is R and AppSyncResolver.__name__ == 'AppSyncResolver'\n"
            "assert SQSEvent.__name__ == 'SQSEvent'\n"
        ),
    )
    # Then the packages' __init__ ran: what a plain import gives
    assert {"asyncio", "aws_lambda_powertools.event_handler.appsync"} <= loaded


def test_a_deferred_package_runs_its_init_once_for_an_unknown_name(tmp_path: Path) -> None:
    # Given a package whose __init__ counts its runs, deferred
    package = tmp_path / "deferred_pkg_probe"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import builtins\n"
        "builtins.deferred_runs = getattr(builtins, 'deferred_runs', 0) + 1\n"
        "from .sub import VALUE as FROM_INIT\n"
    )
    (package / "sub.py").write_text("VALUE = 7\n")
    (package / "other.py").write_text("OTHER = 8\n")
    code = (
        "import builtins, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from claude_jobs.api.resolver import defer_package_init\n"
        "defer_package_init('deferred_pkg_probe', {'OTHER': 'other'})\n"
        "from deferred_pkg_probe.sub import VALUE\n"
        "from deferred_pkg_probe import OTHER, sub\n"
        "assert (VALUE, OTHER, sub.VALUE) == (7, 8, 7)\n"
        "assert getattr(builtins, 'deferred_runs', 0) == 0, 'init ran for a submodule'\n"
        "from deferred_pkg_probe import FROM_INIT\n"
        "import deferred_pkg_probe\n"
        "assert FROM_INIT == 7 and deferred_pkg_probe.FROM_INIT == 7\n"
        "try:\n"
        "    deferred_pkg_probe.missing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('a missing name was found')\n"
        "print(builtins.deferred_runs)\n"
    )
    # When submodules and names are asked for, then a name only the __init__ defines
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    # Then the __init__ ran exactly once, on that name
    assert done.stdout.strip() == "1"


def test_deferring_an_imported_package_changes_nothing() -> None:
    before = sys.modules["json"]
    defer_package_init("json")
    assert sys.modules["json"] is before

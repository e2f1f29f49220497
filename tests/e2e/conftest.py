"""The local stack as a subprocess (`claude-jobs dev`), driven over HTTP only.

One stack serves the module's tests: `claude-jobs dev --port <free> --workers 4`, its upstream
the fake Messages API started here (so the real bundled Claude CLI runs every job), its
Anthropic key a test key that must reach the fake through the emulated Secrets Manager, and two
tenants registered through CLAUDE_JOBS_DEV_KEYS.

The fake answers by the marker in a prompt: `[[echo:X]]` → "echo X", `[[slow:X]]` → the same
after a long delay (a job that stays running), `[[fail:X]]` → an upstream 400 (a job that
fails), `[[big:X]]` → "echo X" and BIG_ANSWER_BYTES more (a result too large to be inline),
`[[bash:X]]` → a Bash call running `BASH_COMMANDS[X]`, then its output as the answer.
Tests use unique markers, so they can count the model calls their own jobs made.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs_client import Client
from claude_jobs_tools import dev_process
from claude_jobs_tools.dev_process import DevProcess as DevProcess
from claude_jobs_tools.dev_process import clean_env
from claude_jobs_tools.local.fake_anthropic import (
    ApiError,
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    ToolUse,
)

#: Unique per run: a sentinel an agent must never be able to read back from the stack.
ANTHROPIC_KEY = f"sk-ant-test-e2e-{secrets.token_hex(12)}"
TENANTS = {
    "alpha": "test-key-alpha-0123456789",
    "beta": "test-key-beta-0123456789",
    # The tenant functions/trigger/triggers.json gives the jobs its triggers start.
    "default": "test-key-default-0123456789",
}
CLAUDE_JOBS = dev_process.executable("claude-jobs")
READY_SECONDS = 90
SLOW_SECONDS = 60.0

_MARKER = re.compile(r"\[\[(echo|slow|fail|grep|bash|big):([A-Za-z0-9_.-]+)\]\]")
BIG_ANSWER_BYTES = 300 * 1024  # over the 256 KiB a job's result may hold inline
#: `[[bash:X]]` runs BASH_COMMANDS[X] (a test registers its command under a unique X).
BASH_COMMANDS: dict[str, str] = {}


def answer(request: RecordedRequest) -> Reply:
    found = _MARKER.search(request.prompt_text())
    if found is None:
        return Text("no marker")
    kind, name = found.groups()
    if kind == "fail":
        return ApiError(400, "invalid_request_error", f"refused {name}")
    if kind == "grep":
        # `[[grep:X]]`: search the job's working directory for X with the Grep tool, then
        # answer with what the tool found (which files in the workspace hold X).
        results = request.tool_results()
        if not results:
            return ToolUse("Grep", {"pattern": name, "output_mode": "files_with_matches"})
        return Text("grep found: " + " | ".join(r["content"] for r in results))
    if kind == "big":
        return Text(f"echo {name} " + "x" * BIG_ANSWER_BYTES, chunk_chars=32_768)
    if kind == "bash":
        results = request.tool_results()
        if not results:
            return ToolUse("Bash", {"command": BASH_COMMANDS[name], "timeout": 300_000})
        return Text("\n".join(r["content"] for r in results))
    return Text(f"echo {name}", delay=SLOW_SECONDS if kind == "slow" else 0.0)


def base_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would change the stack's mode."""
    return clean_env(keep=("CLAUDE_JOBS_FUNCTIONS_DIR",), **extra)


def start_dev(
    tmp: Path, env: dict[str, str], workers: int = 2, args: tuple[str, ...] = ()
) -> DevProcess:
    return dev_process.start_dev(tmp, env, workers=workers, args=args, ready_seconds=READY_SECONDS)


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeAnthropic]:
    # Only our key is accepted: a job succeeds only if the key went through the secret.
    with FakeAnthropic(default=answer, api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def stack(
    fake_model: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevProcess]:
    env = base_env(
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=fake_model.url,
        CLAUDE_JOBS_DEV_KEYS=",".join(f"{t}:{k}" for t, k in TENANTS.items()),
    )
    dev = start_dev(tmp_path_factory.mktemp("stack"), env, workers=4)
    yield dev
    code = dev.stop()
    assert code == 0, dev.output()


@pytest.fixture
def alpha(stack: DevProcess) -> Iterator[Client]:
    with Client(stack.url, TENANTS["alpha"], timeout=60) as client:
        yield client


@pytest.fixture
def beta(stack: DevProcess) -> Iterator[Client]:
    with Client(stack.url, TENANTS["beta"], timeout=60) as client:
        yield client


def model_calls(fake: FakeAnthropic, marker: str) -> list[RecordedRequest]:
    return [r for r in fake.message_requests if marker in r.prompt_text()]

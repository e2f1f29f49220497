"""The worker's only use of claude-agent-sdk's private modules (`claude_agent_sdk._internal`).

The SDK has no public way to spawn its CLI transport over a process started elsewhere, to
read the CLI command it builds, or to write a resumed session's subagent transcripts; these
functions do it with the SDK's private classes and helpers. Nor can a caller tell its message
reader that a CLI was stopped on purpose: `StopMark` quiets what the reader logs then.
Everything else the worker uses of the SDK is public (`query`, `ClaudeAgentOptions`,
`Transport`, `project_key_for_directory`).

The SDK is imported lazily, as the rest of the worker does. `tests/unit/test_sdk_seam.py`
pins the SDK version these functions were checked against and runs each of them against the
installed SDK; an SDK upgrade fails that test until the seam is re-checked (docs/worker.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream, ByteSendStream
    from claude_agent_sdk import ClaudeAgentOptions, Transport


class SdkProcess(Protocol):
    """What the SDK's subprocess transport uses of a process (anyio's `Process` surface)."""

    @property
    def pid(self) -> int: ...

    @property
    def stdin(self) -> ByteSendStream | None: ...

    @property
    def stdout(self) -> ByteReceiveStream | None: ...

    @property
    def stderr(self) -> ByteReceiveStream | None: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


#: The SDK's logger whose message reader reports a CLI's non-zero exit, at ERROR, as
#: "Fatal error in message reader: Command failed with exit code -9 ..." (SIGKILL).
READER_LOGGER = "claude_agent_sdk._internal.query"
READER_FAULT = "Fatal error in message reader"


class StopMark:
    """One run's CLI: `stopped` once the worker stops it on purpose (deadline, cancel, the
    end of a segment). Set by the run's task with `watch()` before it starts the SDK's
    query: the tasks it starts (the SDK's message reader among them) share the mark, and once
    `stopped` is set, the reader's report of the CLI's exit is logged at DEBUG instead of
    ERROR. A CLI that ends by itself, or that anyone else kills (its agent), is still an
    error in the logs."""

    __slots__ = ("stopped",)

    def __init__(self) -> None:
        self.stopped = False

    def watch(self) -> None:
        logger = logging.getLogger(READER_LOGGER)
        if _QUIET_STOPS not in logger.filters:
            logger.addFilter(_QUIET_STOPS)
        _run_mark.set(self)


_run_mark: ContextVar[StopMark | None] = ContextVar("claude_jobs_stop_mark", default=None)


class _QuietStops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        mark = _run_mark.get()
        if (
            mark is not None
            and mark.stopped
            and record.levelno >= logging.ERROR
            and record.getMessage().startswith(READER_FAULT)
        ):
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


_QUIET_STOPS = _QuietStops()


def cli_command(options: ClaudeAgentOptions) -> list[str]:
    """The CLI's argv the SDK's subprocess transport builds for `options` (the prompt is not
    in it: it goes to the CLI's stdin)."""
    from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

    return SubprocessCLITransport(prompt="", options=options)._build_command()


def sdk_environment() -> dict[str, str]:
    """The variables the SDK's transport always sets in the CLI's environment (beside the
    caller's `env` and `PWD`)."""
    from claude_agent_sdk import __version__
    from claude_agent_sdk._internal.transport.subprocess_cli import (
        _SDK_READS_SESSION_STATE_ENV,
    )

    return {
        "CLAUDE_CODE_ENTRYPOINT": "sdk-py",
        "CLAUDE_AGENT_SDK_VERSION": __version__,
        _SDK_READS_SESSION_STATE_ENV: "1",
    }


def transport_over(
    prompt: str,
    options: ClaudeAgentOptions,
    open_process: Callable[[], Awaitable[SdkProcess]],
    on_started: Callable[[int], None],
) -> Transport:
    """The SDK's subprocess transport, but its CLI process is the one `open_process` returns
    (the SDK's own `connect()` spawns it with `os.environ` merged in). `on_started` is told the
    process's pid once the transport holds it; the transport's `pid` attribute is that pid
    (None before). The process's stderr is always drained (to `options.stderr`, if set): a
    full buffer would stall the CLI.

    Sets the SDK transport's private attributes as its own `connect()` does."""
    from anyio.streams.text import TextReceiveStream, TextSendStream
    from claude_agent_sdk._internal._task_compat import spawn_detached
    from claude_agent_sdk._internal.transport import subprocess_cli

    class OpenedTransport(subprocess_cli.SubprocessCLITransport):
        pid: int | None = None

        async def connect(self) -> None:
            if self._process:
                return
            process: Any = await open_process()
            self._process = process
            subprocess_cli._ACTIVE_CHILDREN.add(process)
            self.pid = process.pid
            on_started(process.pid)
            if process.stdout:
                self._stdout_stream = TextReceiveStream(process.stdout)
            if process.stderr:
                self._stderr_stream = TextReceiveStream(process.stderr)
                self._stderr_task = spawn_detached(self._handle_stderr())
            if process.stdin:
                self._stdin_stream = TextSendStream(process.stdin)
            self._ready = True

    return OpenedTransport(prompt=prompt, options=options)


async def materialize_subagent_transcripts(
    store: Any,
    config_dir: Path,
    project_dir: Path,
    project_key: str,
    session_id: str,
    timeout_seconds: float,
) -> None:
    """Write the subagent transcripts (and their metadata) that `store` holds under
    `project_key`/`session_id` below `project_dir/<session_id>/`, as the SDK does when it
    resumes a session from a store. Unsafe subpaths are skipped."""
    from claude_agent_sdk._internal.session_resume import _materialize_subkeys

    await _materialize_subkeys(
        store, config_dir, project_dir, project_key, session_id, timeout_seconds
    )

"""The SDK seam (`claude_jobs.worker.sdk_seam`): the only module that imports
claude-agent-sdk's private modules, checked against the installed SDK.

On an SDK upgrade the version test fails until each seam function has been re-checked against
the new SDK (docs/worker.md, "The SDK seam"); the other tests here run each function against
the installed SDK, without the CLI."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import itertools
import json
import logging
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import claude_agent_sdk
import pytest
from anyio import EndOfStream
from anyio.abc import ByteReceiveStream, ByteSendStream
from claude_agent_sdk import ClaudeAgentOptions, InMemorySessionStore, Transport

from claude_jobs.worker import sdk_seam

#: The claude-agent-sdk version the seam was last checked against.
CHECKED_SDK_VERSION = "0.2.187"

SRC = Path(__file__).resolve().parents[2] / "src"
PRIVATE = "claude_agent_sdk._internal"


def test_the_installed_sdk_is_the_version_the_seam_was_checked_against() -> None:
    # Given the installed claude-agent-sdk
    installed = claude_agent_sdk.__version__
    # Then it is the version the seam was checked against
    assert installed == CHECKED_SDK_VERSION, (
        f"claude-agent-sdk is {installed}, the seam was checked against {CHECKED_SDK_VERSION}: "
        "re-check every function of src/claude_jobs/worker/sdk_seam.py against the new SDK "
        "(docs/worker.md, 'The SDK seam'), then set CHECKED_SDK_VERSION to the new version"
    )


def private_imports(path: Path, root: Path = SRC) -> list[str]:
    """The imports of the SDK's private modules in one source file (named below `root`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        private = [n for n in names if n == PRIVATE or n.startswith(PRIVATE + ".")]
        if private:
            found.append(f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}: {private[0]}")
    return found


def test_no_module_but_the_seam_imports_the_sdks_private_modules() -> None:
    # Given every module under src/
    modules = sorted(SRC.rglob("*.py"))
    assert modules
    # When their imports are read
    offending = [
        hit for path in modules if path.name != "sdk_seam.py" for hit in private_imports(path)
    ]
    # Then only the seam imports claude_agent_sdk._internal (and it does)
    assert offending == [], "private SDK imports outside worker/sdk_seam.py: " + "; ".join(
        offending
    )
    assert private_imports(SRC / "claude_jobs" / "worker" / "sdk_seam.py")


def test_the_scan_finds_every_form_of_a_private_import(tmp_path: Path) -> None:
    # Given a module importing the private modules in each way Python allows
    source = tmp_path / "mod.py"
    source.write_text(
        "import claude_agent_sdk._internal.sessions\n"
        "from claude_agent_sdk import _internal\n"
        "from claude_agent_sdk._internal.transport import subprocess_cli\n"
        "def f():\n"
        "    from claude_agent_sdk._internal import query\n"
        "from claude_agent_sdk import query\n"
    )
    # Then the scan reports each, but the public import
    assert [hit.split(": ")[0] for hit in private_imports(source, tmp_path)] == [
        "mod.py:1",
        "mod.py:2",
        "mod.py:3",
        "mod.py:5",
    ]


def test_cli_command_is_the_sdks_argv_for_the_options_without_the_prompt() -> None:
    # Given options naming a CLI, a model, tools and a turn limit
    options = ClaudeAgentOptions(
        cli_path="/opt/claude",
        model="claude-test",
        permission_mode="dontAsk",
        max_turns=3,
        tools=["Bash"],
        setting_sources=[],
    )
    # When the command is built
    command = sdk_seam.cli_command(options)
    # Then it starts that CLI in stream-json mode, with each option on its command line
    assert command[0] == "/opt/claude"
    pairs = dict(itertools.pairwise(command))
    assert pairs["--output-format"] == "stream-json"
    assert pairs["--input-format"] == "stream-json"
    assert pairs["--model"] == "claude-test"
    assert pairs["--max-turns"] == "3"
    assert pairs["--tools"] == "Bash"
    assert pairs["--permission-mode"] == "dontAsk"


def test_sdk_environment_is_what_the_sdks_own_transport_adds(tmp_path: Path) -> None:
    # Given a stand-in CLI that reports its environment, spawned by the SDK's own transport
    cli = tmp_path / "cli"
    cli.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import json, os; "
        'print(json.dumps({"type": "env", "env": dict(os.environ)}))\'\n'
    )
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)

    async def spawned_env() -> dict[str, str]:
        from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

        options = ClaudeAgentOptions(cli_path=cli, cwd=tmp_path, env={})
        transport = SubprocessCLITransport(prompt="", options=options)
        await transport.connect()
        try:
            messages = [m async for m in transport.read_messages()]
        finally:
            await transport.close()
        return dict(messages[0]["env"])

    env = asyncio.run(spawned_env())
    # Then what it adds to the worker's environment, but PWD, is `sdk_environment()`
    added = {k: v for k, v in env.items() if os.environ.get(k) != v and k != "PWD"}
    assert added == sdk_seam.sdk_environment()
    assert added["CLAUDE_AGENT_SDK_VERSION"] == claude_agent_sdk.__version__


class Chunks(ByteReceiveStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await asyncio.sleep(0)
        if not self._chunks:
            raise EndOfStream
        return self._chunks.pop(0)

    async def aclose(self) -> None:
        self._chunks.clear()


class Sink(ByteSendStream):
    def __init__(self) -> None:
        self.sent = bytearray()
        self.closed = False

    async def send(self, item: bytes) -> None:
        self.sent += item

    async def aclose(self) -> None:
        self.closed = True


@dataclass(eq=False)
class ScriptedProcess:
    """A process as the worker hands it to the seam: its output scripted, its input kept."""

    stdout: Chunks
    stderr: Chunks
    stdin: Sink = field(default_factory=Sink)
    pid: int = 4242
    returncode: int | None = None
    signals: list[str] = field(default_factory=list)

    async def wait(self) -> int:
        self.returncode = 0
        return 0

    def terminate(self) -> None:
        self.signals.append("TERM")

    def kill(self) -> None:
        self.signals.append("KILL")


def test_transport_over_runs_the_sdk_transport_over_the_given_process() -> None:
    from claude_agent_sdk._internal.transport import subprocess_cli

    active: set[Any] = subprocess_cli._ACTIVE_CHILDREN
    # Given a process whose stdout carries two messages (one split over two reads) and whose
    # stderr carries a line
    process = ScriptedProcess(
        stdout=Chunks([b'{"type": "a", "n": 1}\n{"type": "b",', b' "n": 2}\n']),
        stderr=Chunks([b"a warning\n"]),
    )
    stderr: list[str] = []
    started: list[int] = []
    opened: list[Any] = []

    async def open_process() -> ScriptedProcess:
        opened.append(process)
        return process

    options = ClaudeAgentOptions(stderr=stderr.append)

    async def run() -> tuple[list[dict[str, Any]], Transport]:
        transport = sdk_seam.transport_over("the prompt", options, open_process, started.append)
        assert isinstance(transport, Transport)
        assert getattr(transport, "pid", "missing") is None and not opened
        # When it connects, is written to and read to its end, and closes
        await transport.connect()
        assert transport.is_ready()
        assert started == [4242] and getattr(transport, "pid", None) == 4242
        assert process in active  # the SDK's exit reaper knows it
        await transport.connect()  # a second connect opens nothing
        await transport.write('{"type": "user"}\n')
        messages = [m async for m in transport.read_messages()]
        await transport.close()
        return messages, transport

    messages, transport = asyncio.run(run())
    # Then the process was opened once and spoke through the SDK's transport
    assert opened == [process]
    assert messages == [{"type": "a", "n": 1}, {"type": "b", "n": 2}]
    assert bytes(process.stdin.sent) == b'{"type": "user"}\n'
    assert process.stdin.closed and not transport.is_ready()
    assert stderr == ["a warning"]
    assert process not in active  # reaped: no longer tracked
    assert process.signals == []  # it had ended: nothing to stop


def test_materialize_subagent_transcripts_writes_the_stores_subagents(tmp_path: Path) -> None:
    # Given a store holding a session's subagent transcript, its metadata, and an unsafe
    # subpath
    store = InMemorySessionStore()
    project_key, session_id = "tenant-a", "s-1"

    async def fill() -> None:
        key: Any = {"project_key": project_key, "session_id": session_id}
        entries: list[Any] = [{"type": "user", "uuid": "u-0"}]
        await store.append(key, entries)
        entries = [
            {"type": "assistant", "uuid": "u-1"},
            {"type": "agent_metadata", "agentType": "reviewer"},
        ]
        subagent: Any = {**key, "subpath": "subagents/agent-x"}
        await store.append(subagent, entries)
        escape: Any = {**key, "subpath": "../escape"}
        await store.append(escape, [{"type": "user", "uuid": "u-2"}])

    asyncio.run(fill())
    project_dir = tmp_path / "projects" / "p"
    project_dir.mkdir(parents=True)
    # When the subagent transcripts are materialised
    asyncio.run(
        sdk_seam.materialize_subagent_transcripts(
            store, tmp_path, project_dir, project_key, session_id, 5.0
        )
    )
    # Then the subagent's transcript and metadata are written below the session's folder
    transcript = project_dir / session_id / "subagents" / "agent-x.jsonl"
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert lines == [{"type": "assistant", "uuid": "u-1"}]
    meta = json.loads((project_dir / session_id / "subagents" / "agent-x.meta.json").read_text())
    assert meta == {"agentType": "reviewer"}
    # and nothing escapes it
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {
        "projects/p/s-1/subagents/agent-x.jsonl",
        "projects/p/s-1/subagents/agent-x.meta.json",
    }


def test_the_public_project_key_is_the_one_the_cli_uses(tmp_path: Path) -> None:
    # Given a working directory with characters the CLI replaces
    work = tmp_path / "work dir.1"
    work.mkdir()
    # Then the SDK's public project key is its real path with every other character a dash
    key = claude_agent_sdk.project_key_for_directory(work)
    assert key == "".join(c if c.isalnum() else "-" for c in str(work.resolve()))


def test_the_sdks_reader_reports_a_cli_exit_where_the_stop_mark_looks() -> None:
    # Given the installed SDK's query module (its logger is named after it)
    module = importlib.import_module(sdk_seam.READER_LOGGER)
    # Then its message reader logs a CLI's failed exit on that logger, with the quieted words
    assert module.logger.name == sdk_seam.READER_LOGGER
    assert f'logger.error(f"{sdk_seam.READER_FAULT}: ' in inspect.getsource(module)


def test_a_stop_mark_quiets_only_its_own_runs_reader_and_only_once_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = logging.getLogger(sdk_seam.READER_LOGGER)
    fault = f"{sdk_seam.READER_FAULT}: Command failed with exit code -9 (exit code: -9)"

    async def run(mark: sdk_seam.StopMark, stop: bool, started: asyncio.Event) -> None:
        # a run's task marks itself, then starts its reader (as the SDK's query does)
        mark.watch()

        async def read() -> None:
            await started.wait()
            reader.error(fault)
            reader.error("Fatal error elsewhere")

        task = asyncio.create_task(read())
        if stop:
            mark.stopped = True
        started.set()
        await task

    async def both() -> None:
        # Given two runs at once on one loop: one stopped by the worker, one not
        await asyncio.gather(
            run(sdk_seam.StopMark(), True, asyncio.Event()),
            run(sdk_seam.StopMark(), False, asyncio.Event()),
        )

    caplog.set_level(logging.DEBUG, logger=sdk_seam.READER_LOGGER)
    asyncio.run(both())
    # Then the stopped run's report is DEBUG, the other run's and every other line stay ERROR
    levels = sorted((r.levelname, r.getMessage()) for r in caplog.records)
    assert levels == [
        ("DEBUG", fault),
        ("ERROR", "Fatal error elsewhere"),
        ("ERROR", "Fatal error elsewhere"),
        ("ERROR", fault),
    ]
    # And outside any run nothing is quieted
    caplog.clear()
    reader.error(fault)
    assert [r.levelname for r in caplog.records] == ["ERROR"]

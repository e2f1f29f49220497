"""Starting and attaching the bundled Claude Code CLI of an agent run.

The worker starts the CLI itself — exec'd directly, with exactly the job's environment
allowlist, as the agent's identity, in a session of its own — instead of the SDK's
`{**os.environ, **env}` spawn, and hands it to the SDK's transport (`sdk_seam.transport_over`).
Stopping (deadline passed, cancel requested) SIGKILLs the CLI's process group at once; what the
agent detached from it is ended by the worker's sweep after the run (`containment.py`).

The CLI's stdin, stdout and stderr are socketpairs, not pipes (`CliProcess`): the CLI runs as
the agent's uid, and where that is the worker's own (Lambda) the agent's Bash could reopen a
pipe through `/proc/<cli>/fd/N` and write frames to the worker (or commands to the CLI); a
socket cannot be reopened that way (ENXIO). stdout and stderr carry one direction only. What
the CLI says is still the agent's to shape (docs/security.md): nothing read from it is
trusted beyond the job itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

from anyio import ClosedResourceError, EndOfStream
from anyio.abc import ByteReceiveStream, ByteSendStream
from anyio.lowlevel import checkpoint

from ..observability import deferred_logger
from .agent_options import Launch, launch_of, sdk_options
from .isolation import kill_process_group
from .sdk_seam import transport_over

if TYPE_CHECKING:
    from .agent import AgentRequest

log = deferred_logger()  # Powertools' structured logger


class AgentStartError(RuntimeError):
    """The CLI could not be started at all (an infrastructure fault: the job is retried)."""


class CliProcess:
    """A CLI started by the worker with socketpairs as its stdin, stdout and stderr (stdout
    and stderr one direction each: the CLI cannot read from them),
    which `attach()` hands to a run's event loop. A cold start spawns one for its run; a warm
    start (`warm.py`) spawns one before its job is known: it boots and then waits for its stdin,
    where the job's run later writes the SDK's initialize request and the prompt.

    It is started exactly as a run would start it (same session of its own, umask, identity,
    allowlisted environment)."""

    def __init__(
        self, launch: Launch, popen: subprocess.Popen[bytes], ends: tuple[socket.socket, ...]
    ) -> None:
        self.launch = launch
        self._popen = popen
        #: The worker's ends of the CLI's stdin, stdout and stderr.
        self._ends = ends
        self.pid = popen.pid
        self.started = time.monotonic()

    @classmethod
    def start(cls, request: AgentRequest) -> CliProcess:
        return cls.spawn(launch_of(request, sdk_options(request, stderr=lambda line: None)))

    @classmethod
    def spawn(cls, launch: Launch) -> CliProcess:
        argv, spawn = launch.spawn()
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        ours = tuple(pair[0] for pair in pairs)
        theirs = [pair[1] for pair in pairs]
        try:
            # One direction each for stdout and stderr (the CLI writes, the worker reads).
            # stdin stays two-way: asyncio's write transport takes an end that reads EOF for
            # a closed peer, so what the CLI might write there only ends its own run.
            for index in (1, 2):
                theirs[index].shutdown(socket.SHUT_RD)
                ours[index].shutdown(socket.SHUT_WR)
            popen = subprocess.Popen(
                argv,
                stdin=theirs[0].fileno(),
                stdout=theirs[1].fileno(),
                stderr=theirs[2].fileno(),
                **spawn,
            )
        except Exception as exc:
            for end in ours:
                end.close()
            raise AgentStartError(f"Claude Code could not be started: {exc}") from exc
        finally:
            for end in theirs:
                end.close()
        return cls(launch, popen, ours)

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None

    def cpu_ticks(self) -> int | None:
        """The CLI's CPU time so far, in clock ticks (None once it has ended)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])

    def settle(self, max_seconds: float, *, quiet_seconds: float = 0.06) -> float:
        """Wait until the CLI has booted — its CPU time stops growing — or `max_seconds` pass;
        returns the seconds waited. On Lambda the environment is frozen when the handler
        returns, so a CLI still booting then would boot during the next job instead."""
        began = time.monotonic()
        last: int | None = None
        quiet_since = began
        while time.monotonic() - began < max_seconds and self.alive:
            ticks = self.cpu_ticks()
            now = time.monotonic()
            if ticks is None:
                break
            if ticks != last:
                last, quiet_since = ticks, now
            elif ticks > 0 and now - quiet_since >= quiet_seconds:
                break
            time.sleep(0.02)
        return time.monotonic() - began

    def stop(self) -> None:
        """SIGKILL the CLI's process group and reap the CLI."""
        if self._popen.poll() is None:
            kill_process_group(self.pid)
            try:
                self._popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("a warm CLI (pid %s) did not end after SIGKILL", self.pid)
        for end in self._ends:
            with contextlib.suppress(OSError):
                end.close()

    async def attach(self) -> _AttachedProcess:
        """The process, its channels as anyio byte streams on the running event loop."""
        popen = self._popen
        stdin, stdout, stderr = self._ends
        loop = asyncio.get_running_loop()
        streams = []
        for end in (stdout, stderr):
            reader = asyncio.StreamReader(limit=2**20)
            protocol = asyncio.StreamReaderProtocol(reader)
            read_end, _ = await loop.connect_read_pipe(lambda p=protocol: p, end)  # type: ignore[misc]
            streams.append(_PipeReceiveStream(reader, read_end))
        write_end, flow = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), stdin
        )
        writer = asyncio.StreamWriter(write_end, flow, None, loop)
        return _AttachedProcess(popen, _PipeSendStream(writer), streams[0], streams[1])


class _PipeReceiveStream(ByteReceiveStream):
    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self._reader = reader
        self._transport = transport

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._reader.read(max_bytes)
        if not data:
            raise EndOfStream
        return data

    async def aclose(self) -> None:
        self._transport.close()
        await checkpoint()


class _PipeSendStream(ByteSendStream):
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def send(self, item: bytes) -> None:
        if self._writer.is_closing():
            raise ClosedResourceError
        self._writer.write(item)
        await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        await checkpoint()


class _AttachedProcess:
    """What the SDK's transport uses of a process (anyio's `Process` surface), for a CLI that
    was started before the run's event loop existed."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: ByteSendStream,
        stdout: ByteReceiveStream,
        stderr: ByteReceiveStream,
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        while (code := self._popen.poll()) is None:
            await asyncio.sleep(0.01)
        return code

    def send_signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def open_transport(request: AgentRequest, options: Any) -> Any:
    """The SDK's subprocess transport, but spawning the CLI with only the job's environment.

    The SDK's own `connect()` merges `os.environ` into the CLI's environment and cannot drop an
    inherited variable; this one execs the CLI with the allowlist alone (plus the variables the
    SDK always sets), as the agent's user and in a new session, and remembers its pid (= its
    process group). With `request.warm`, a CLI started ahead of the job for exactly this launch
    is used instead of starting one (a warm start); one started for another launch is stopped
    and the CLI is started cold. The transport is the SDK's, over this process
    (`sdk_seam.transport_over`; `tests/worker` run it for real)."""
    launch = launch_of(request, options)

    async def open_process() -> Any:
        warm = request.warm
        if warm is not None and (warm.launch != launch or not warm.alive):
            log.warning("job %s: the warm CLI does not fit; starting one", request.job_id)
            warm.stop()
            warm = None
        try:
            # Socketpairs, not pipes, whether warm or cold (`CliProcess`).
            started = warm if warm is not None else CliProcess.spawn(launch)
            return await started.attach()
        except AgentStartError:
            raise
        except Exception as exc:
            raise AgentStartError(f"Claude Code could not be started: {exc}") from exc

    return transport_over(request.prompt, options, open_process, request.on_started)


#: A CLI started before its job is known (warm start): a `CliProcess` (its former name).
WarmProcess = CliProcess

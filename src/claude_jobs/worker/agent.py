"""One agent run: the bundled Claude Code CLI through claude-agent-sdk, bounded by a deadline
and stoppable on request.

The CLI runs with `permission_mode="dontAsk"` (anything not pre-approved is denied), no setting
sources, a strict and empty MCP configuration, and `tools` limited to the base names of the
job's `allowed_tools`: a tool the job does not allow does not exist for the model, and a call
to it anyway is answered "No such tool available". A permission rule such as
`Bash(git status:*)` offers the tool but approves only matching calls; `dontAsk` denies the
rest.

The worker's transport starts the bundled CLI itself — exec'd directly, with exactly the job's
environment allowlist, as the agent's identity, in a session of its own — instead of the SDK's
`{**os.environ, **env}` spawn. Stopping (deadline passed, cancel requested) SIGKILLs the CLI's
process group at once; what the agent detached from it is ended by the worker's sweep after the
run (`containment.py`).

The CLI's stdin, stdout and stderr are socketpairs, not pipes (`CliProcess`): the CLI runs as
the agent's uid, and where that is the worker's own (Lambda) the agent's Bash could reopen a
pipe through `/proc/<cli>/fd/N` and write frames to the worker (or commands to the CLI); a
socket cannot be reopened that way (ENXIO). stdout and stderr carry one direction only. What
the CLI says is still the agent's to shape (README "Security model"): nothing read from it is
trusted beyond the job itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio import ClosedResourceError, EndOfStream
from anyio.abc import ByteReceiveStream, ByteSendStream
from anyio.lowlevel import checkpoint

from ..models import JobErrorInfo, Usage, tool_base_name
from ..observability import deferred_logger
from .isolation import AgentIdentity, kill_process_group, spawn_as
from .ports import AgentOutcome as AgentOutcome
from .ports import AgentRequest as AgentRequest
from .ports import Ending as Ending

log = deferred_logger()  # Powertools' structured logger

#: Error codes a job can end with (documented in docs/worker.md).
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"
MAX_TURNS = "max_turns"
BUDGET_EXCEEDED = "budget_exceeded"
UPSTREAM_ERROR = "upstream_error"
OUTPUT_INVALID = "output_invalid"
AGENT_ERROR = "agent_error"

_SUBTYPE_CODES = {
    "error_max_turns": MAX_TURNS,
    "error_max_budget_usd": BUDGET_EXCEEDED,
    "error_max_structured_output_retries": OUTPUT_INVALID,
}

#: Seconds the run gets to wind down after its CLI was killed.
_STOP_GRACE_SECONDS = 10
#: Seconds a segment paused at a turn boundary gets, at least, to end by itself (write its
#: transcript's last entries and report) before it is stopped; it gets until its hard stop.
_PAUSE_GRACE_SECONDS = 0.2
#: A segment's next tool call is expected to take up to this many times its longest so far.
_TOOL_TIME_FACTOR = 1.25


class AgentStartError(RuntimeError):
    """The CLI could not be started at all (an infrastructure fault: the job is retried)."""


def sdk_options(
    request: AgentRequest,
    stderr: Callable[[str], None] | None = None,
    pre_tool_use: Any | None = None,
    post_tool_use: Any | None = None,
) -> Any:
    """The ClaudeAgentOptions for a job (built here so tests can read them). `pre_tool_use`:
    a PreToolUse hook callback (a segment's turn-boundary stop); `post_tool_use`: a callback
    for PostToolUse and PostToolUseFailure (how long the segment's tool calls take)."""
    from claude_agent_sdk import ClaudeAgentOptions, HookMatcher

    options = request.options
    tools: list[str] = []
    for tool in options.allowed_tools:
        base = tool_base_name(tool)
        if base not in tools:
            tools.append(base)
    system_prompt: Any = (
        request.system_prompt
        if request.system_prompt
        else {"type": "preset", "preset": "claude_code"}
    )
    # Sessions: resume the transcript materialised in the sandbox, or start one under the
    # session's id; the SDK mirrors what the CLI writes to the (tenant-scoped) store.
    session: dict[str, Any] = {}
    if request.session is not None:
        key = "resume" if request.session.resume else "session_id"
        session = {key: request.session.session_id, "session_store": request.session.store}
    hooks: dict[str, Any] = {}
    if pre_tool_use is not None:
        hooks["PreToolUse"] = [HookMatcher(matcher=None, hooks=[pre_tool_use])]
    if post_tool_use is not None:
        for event in ("PostToolUse", "PostToolUseFailure"):
            hooks[event] = [HookMatcher(matcher=None, hooks=[post_tool_use])]
    if hooks:
        session["hooks"] = hooks
    return ClaudeAgentOptions(
        **session,
        cli_path=request.cli,
        cwd=request.cwd,
        env=request.env,
        permission_mode="dontAsk",
        setting_sources=[],
        strict_mcp_config=True,
        mcp_servers={},
        tools=tools,
        allowed_tools=list(options.allowed_tools),
        max_turns=options.max_turns,
        max_budget_usd=options.max_budget_usd,
        model=request.model,
        system_prompt=system_prompt,
        output_format=(
            {"type": "json_schema", "schema": options.output_schema}
            if options.output_schema is not None
            else None
        ),
        stderr=stderr,
    )


class AgentRunner:
    """Runs agent requests; safe to share between threads (each run has its own event loop)."""

    def __init__(self, *, poll_seconds: float = 2.0) -> None:
        self._poll_seconds = poll_seconds

    def run(self, request: AgentRequest) -> AgentOutcome:
        return asyncio.run(self._run(request))

    async def _run(self, request: AgentRequest) -> AgentOutcome:
        run = _Run(request, self._poll_seconds)
        return await run.execute()


class _Run:
    def __init__(self, request: AgentRequest, poll_seconds: float) -> None:
        self.request = request
        self.poll_seconds = poll_seconds
        self.result: Any | None = None
        self.failure: BaseException | None = None
        self.stderr: deque[str] = deque(maxlen=20)
        self.assistant_usage: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.transport: Any | None = None
        #: A segment's turn-boundary stop happened (the hook refused the next tool call).
        self.yielded = False
        self.paused = asyncio.Event()
        #: Long jobs: when each running tool call started, and the longest one so far.
        self.tool_started: dict[str, float] = {}
        self.longest_tool = 0.0

    async def execute(self) -> AgentOutcome:
        consume = asyncio.create_task(self._consume())
        watch = asyncio.create_task(self._watch())
        paused = asyncio.create_task(self.paused.wait())
        ending: Ending | None = None
        try:
            done, _ = await asyncio.wait(
                {consume, watch, paused},
                timeout=max(self.request.deadline_seconds, 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if paused in done and consume not in done:
                # A segment paused at a turn boundary (its next tool refused): the CLI ends by
                # itself once it has written its transcript's last entries (the refused call's
                # result) and reported, which flushes the mirror. It gets until the hard stop
                # for that (no tool can start meanwhile); stopping it sooner could cut them off.
                grace = max(self.request.deadline_seconds - self._elapsed(), _PAUSE_GRACE_SECONDS)
                done, _ = await asyncio.wait({consume}, timeout=grace)
                if consume not in done:
                    ending = "segment"
            if consume not in done:
                ending = ending or ("cancelled" if watch in done else "timed_out")
                if ending == "timed_out" and self.request.yield_after_seconds is not None:
                    ending = "segment"  # the invocation's end, not the job's deadline
                log.info("stopping the agent of job %s: %s", self.request.job_id, ending)
                self._kill()
                try:
                    await asyncio.wait_for(asyncio.shield(consume), _STOP_GRACE_SECONDS)
                except TimeoutError:
                    consume.cancel()
                    await asyncio.gather(consume, return_exceptions=True)
        finally:
            watch.cancel()
            paused.cancel()
            await asyncio.gather(watch, paused, return_exceptions=True)
            self._kill()  # whatever the agent left running
        if ending is None and isinstance(self.failure, AgentStartError):
            raise self.failure
        if ending is None and self.yielded:
            ending = "segment"
        return self._outcome(ending)

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    async def _pre_tool_use(self, data: Any, tool_use_id: str | None, context: Any) -> Any:
        """A segment's turn boundary: once its time is up, the next tool call does not run and
        the agent stops (every earlier tool's result is in the transcript by now). Nor does a
        call that would still be running at the hard stop, judging by the longest call this
        segment has made: it would be cut off half-way and done again by the next segment."""
        after = self.request.yield_after_seconds
        elapsed = self._elapsed()
        expected = self.longest_tool * _TOOL_TIME_FACTOR
        if after is None or (
            elapsed < after and elapsed + expected < self.request.deadline_seconds
        ):
            if after is not None and tool_use_id:
                self.tool_started[tool_use_id] = time.monotonic()
            return {}
        self.yielded = True
        self.paused.set()
        log.info("pausing the agent of job %s at a turn boundary", self.request.job_id)
        return {
            "continue_": False,
            "stopReason": "paused at the worker invocation's end; the job resumes",
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": "paused; the job resumes in its next segment",
            },
        }

    async def _post_tool_use(self, data: Any, tool_use_id: str | None, context: Any) -> Any:
        """A tool call ended (or failed): how long it took."""
        began = self.tool_started.pop(tool_use_id or "", None)
        if began is not None:
            self.longest_tool = max(self.longest_tool, time.monotonic() - began)
        return {}

    def _pid(self) -> int | None:
        return getattr(self.transport, "pid", None)

    def _kill(self) -> None:
        kill_process_group(self._pid())

    async def _watch(self) -> None:
        """Return once a stop is requested (polls `should_stop` off the event loop)."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                if await asyncio.to_thread(self.request.should_stop):
                    return
            except Exception as exc:  # a failed poll is not a reason to stop
                log.warning("cancel poll failed: %s", type(exc).__name__)

    async def _consume(self) -> None:
        from claude_agent_sdk import AssistantMessage, ResultMessage, query

        segment = self.request.yield_after_seconds is not None
        options = sdk_options(
            self.request,
            stderr=self.stderr.append,
            pre_tool_use=self._pre_tool_use if segment else None,
            post_tool_use=self._post_tool_use if segment else None,
        )
        self.transport = _clean_transport(self.request, options)
        try:
            async for message in query(
                prompt=self.request.prompt, options=options, transport=self.transport
            ):
                self.request.on_message(message)
                if isinstance(message, ResultMessage):
                    self.result = message
                elif isinstance(message, AssistantMessage) and message.usage:
                    key = message.message_id or str(len(self.assistant_usage))
                    self.assistant_usage[key] = dict(message.usage)
        except Exception as exc:
            if self.result is None:  # an error result is followed by a ResultError: expected
                self.failure = exc

    # ------------------------------------------------------------ outcome

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def _usage(self) -> Usage:
        result = self.result
        if result is not None:
            usage = result.usage or {}
            return Usage(
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
                cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
                total_cost_usd=float(result.total_cost_usd or 0.0),
                num_turns=int(result.num_turns or 0),
                duration_ms=int(result.duration_ms or 0),
            )
        # Stopped before the CLI reported: what its assistant messages said so far.
        totals = {
            name: sum(int(u.get(name) or 0) for u in self.assistant_usage.values())
            for name in (
                "input_tokens",
                "output_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
            )
        }
        return Usage(**totals, num_turns=len(self.assistant_usage), duration_ms=self._elapsed_ms())

    def _outcome(self, ending: Ending | None) -> AgentOutcome:
        usage = self._usage()
        if ending == "timed_out":
            seconds = self.request.deadline_seconds
            return AgentOutcome(
                "timed_out",
                usage=usage,
                error=JobErrorInfo(
                    code=TIMED_OUT,
                    message=f"the job did not finish within its deadline of {seconds:.0f} s "
                    "and was stopped",
                ),
            )
        if ending == "segment":
            return AgentOutcome("segment", usage=usage)
        if ending == "cancelled":
            return AgentOutcome(
                "cancelled",
                usage=usage,
                error=JobErrorInfo(code=CANCELLED, message="cancelled on request while running"),
            )
        result = self.result
        if result is None:
            detail = f"{type(self.failure).__name__}: {self.failure}" if self.failure else ""
            tail = " | ".join(line.strip() for line in self.stderr if line.strip())[-1000:]
            message = "Claude Code ended without a result"
            message += f" ({detail})" if detail else ""
            message += f"; stderr: {tail}" if tail else ""
            return AgentOutcome(
                "failed", usage=usage, error=JobErrorInfo(code=AGENT_ERROR, message=message)
            )
        denials = [
            str(d.get("tool_name", "?")) if isinstance(d, dict) else str(d)
            for d in (result.permission_denials or [])
        ]
        text = result.result
        if result.subtype == "success" and not result.is_error:
            return self._success(text, result.structured_output, usage, denials)
        code = _SUBTYPE_CODES.get(result.subtype)
        errors = "; ".join(str(e) for e in (result.errors or []))
        if code is None and (
            result.api_error_status is not None or result.terminal_reason == "api_error"
        ):
            code = UPSTREAM_ERROR
            status = result.api_error_status
            message = (text or errors or "the Messages API call failed").strip()
            if status is not None and str(status) not in message:
                message = f"upstream answered {status}: {message}"
        else:
            code = code or AGENT_ERROR
            message = errors or (text or "").strip() or f"Claude Code ended with {result.subtype}"
        return AgentOutcome(
            "failed",
            text=text,
            usage=usage,
            error=JobErrorInfo(code=code, message=message[:4000]),
            permission_denials=denials,
        )

    def _success(
        self, text: str | None, structured: Any, usage: Usage, denials: list[str]
    ) -> AgentOutcome:
        schema = self.request.options.output_schema
        if schema is None:
            return AgentOutcome("succeeded", text=text, usage=usage, permission_denials=denials)
        problem = validation_problem(structured, schema)
        if problem is not None:
            return AgentOutcome(
                "failed",
                text=text,
                usage=usage,
                error=JobErrorInfo(code=OUTPUT_INVALID, message=problem),
                permission_denials=denials,
            )
        return AgentOutcome(
            "succeeded", text=text, structured=structured, usage=usage, permission_denials=denials
        )


def validation_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` does not satisfy `schema`, or None when it does."""
    if value is None:
        return "the agent produced no structured output"
    from jsonschema import validators

    validator = validators.validator_for(schema)(schema)
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"structured output does not match output_schema at {where}: {error.message}"[:2000]


@dataclass(frozen=True)
class Launch:
    """Everything that starts a CLI: its argv, its whole environment, where and as whom. Two
    runs with equal launches start the same CLI (the prompt goes to its stdin later)."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    identity: AgentIdentity

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.env)

    def spawn(self) -> tuple[list[str], dict[str, Any]]:
        """The argv and the `subprocess.Popen`/`anyio.open_process` arguments (but the pipes)
        that start this CLI: exactly its environment, in a session of its own, umask 077, as
        the agent's user."""
        argv, as_agent = spawn_as(self.identity, list(self.command))
        return argv, {
            "cwd": self.cwd,
            "env": self.environment,
            "start_new_session": True,
            "umask": 0o077,
            **as_agent,
        }


def launch_of(request: AgentRequest, options: Any) -> Launch:
    """The CLI a run starts: the SDK's own command for `options`, and exactly the request's
    environment plus the variables the SDK always sets."""
    from claude_agent_sdk import __version__ as sdk_version
    from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

    command = SubprocessCLITransport(prompt="", options=options)._build_command()
    env = {
        **request.env,
        "CLAUDE_CODE_ENTRYPOINT": "sdk-py",
        "CLAUDE_AGENT_SDK_VERSION": sdk_version,
        "CLAUDE_CODE_SDK_READS_SESSION_STATE": "1",
        "PWD": str(request.cwd),
    }
    return Launch(tuple(command), tuple(sorted(env.items())), str(request.cwd), request.identity)


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


def _clean_transport(request: AgentRequest, options: Any) -> Any:
    """The SDK's subprocess transport, but spawning the CLI with only the job's environment.

    The SDK's own `connect()` merges `os.environ` into the CLI's environment and cannot drop an
    inherited variable; this one execs the CLI with the allowlist alone (plus the variables the
    SDK always sets), as the agent's user and in a new session, and remembers its pid (= its
    process group). With `request.warm`, a CLI started ahead of the job for exactly this launch
    is used instead of starting one (a warm start); one started for another launch is stopped
    and the CLI is started cold. It relies on the SDK transport's private attributes (pinned SDK
    version; `tests/worker` run it for real)."""
    from anyio.streams.text import TextReceiveStream, TextSendStream
    from claude_agent_sdk._internal._task_compat import spawn_detached
    from claude_agent_sdk._internal.transport import subprocess_cli
    from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

    launch = launch_of(request, options)

    class CleanTransport(SubprocessCLITransport):
        pid: int | None = None

        async def connect(self) -> None:
            if self._process:
                return
            warm = request.warm
            if warm is not None and (warm.launch != launch or not warm.alive):
                log.warning("job %s: the warm CLI does not fit; starting one", request.job_id)
                warm.stop()
                warm = None
            try:
                # Socketpairs, not pipes, whether warm or cold (`CliProcess`).
                started = warm if warm is not None else CliProcess.spawn(launch)
                process: Any = await started.attach()
            except AgentStartError:
                raise
            except Exception as exc:
                raise AgentStartError(f"Claude Code could not be started: {exc}") from exc
            self._process = process
            subprocess_cli._ACTIVE_CHILDREN.add(process)
            self.pid = process.pid
            request.on_started(process.pid)
            if process.stdout:
                self._stdout_stream = TextReceiveStream(process.stdout)
            if process.stderr:  # always drained: a full buffer would stall the CLI
                self._stderr_stream = TextReceiveStream(process.stderr)
                self._stderr_task = spawn_detached(self._handle_stderr())
            if process.stdin:
                self._stdin_stream = TextSendStream(process.stdin)
            self._ready = True

    return CleanTransport(prompt=request.prompt, options=options)


#: A CLI started before its job is known (warm start): a `CliProcess` (its former name).
WarmProcess = CliProcess

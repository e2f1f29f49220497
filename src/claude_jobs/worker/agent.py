"""One agent run: the bundled Claude Code CLI through claude-agent-sdk, bounded by a deadline
and stoppable on request.

The run's SDK options and the CLI they launch are built in `agent_options.py`; the CLI is
started (cold, or adopted warm) and handed to the SDK's transport in `cli_process.py`. A run
ends when its CLI reports a result, its deadline passes, a stop is requested, or (a segment)
it pauses at a turn boundary; stopping SIGKILLs the CLI's process group at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..models import JobErrorInfo, Usage
from ..observability import deferred_logger
from .agent_options import Launch as Launch
from .agent_options import launch_of as launch_of
from .agent_options import sdk_options as sdk_options
from .approvals import ApprovalGate, deferred_from_result
from .cli_process import AgentStartError as AgentStartError
from .cli_process import CliProcess as CliProcess
from .cli_process import WarmProcess as WarmProcess
from .cli_process import open_transport
from .isolation import kill_process_group
from .ports import AgentOutcome as AgentOutcome
from .ports import AgentRequest as AgentRequest
from .ports import Ending as Ending
from .sdk_seam import StopMark

if TYPE_CHECKING:
    from claude_agent_sdk import Transport


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
        self.transport: Transport | None = None
        #: Set when the worker kills the CLI (its SDK reader's report of that is no error).
        self.stop_mark = StopMark()
        #: A segment's turn-boundary stop happened (the hook refused the next tool call).
        self.yielded = False
        self.paused = asyncio.Event()
        #: The CLI reported its result (or the run ended).
        self.reported = asyncio.Event()
        #: Long jobs: when each running tool call started, the calls whose results the CLI
        #: reported, and the longest call this segment has timed (None: none yet).
        self.tool_started: dict[str, float] = {}
        self.tool_answered: set[str] = set()
        self.longest_tool: float | None = None
        #: The estimate handed to the next segment (`_tool_estimate`), taken when it ends.
        self.cut_estimate: float | None = None
        #: Approvals: defers a call matching the request's rules.
        self.gate = (
            ApprovalGate(
                request.approvals,
                request.approved_calls,
                denied=dict(request.denied_calls),
                ask_questions=request.ask_questions,
            )
            if request.approvals or request.ask_questions or request.denied_calls
            else None
        )

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
                self.cut_estimate = self._tool_estimate()  # before its calls' ends are reported
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
        if ending == "segment" and self.cut_estimate is None:
            self.cut_estimate = self._tool_estimate()
        return self._outcome(ending)

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    async def _pre_tool_use(self, data: Any, tool_use_id: str | None, context: Any) -> Any:
        """Approvals: a call matching a rule is deferred (`approvals.py`). A segment's turn
        boundary: once its time is up, the next tool call does not run and
        the agent stops (every earlier tool's result is in the transcript by now). Nor does a
        call that would still be running at the hard stop, judging by the longest call this
        segment has made (or the previous segment's: `_expected_tool_seconds`): it would be cut
        off half-way and done again by the next segment."""
        after = self.request.yield_after_seconds
        elapsed = self._elapsed()
        expected = self._expected_tool_seconds() * _TOOL_TIME_FACTOR
        if after is None or (
            elapsed < after and elapsed + expected < self.request.deadline_seconds
        ):
            answer = self.gate.check(data, tool_use_id) if self.gate is not None else None
            if answer is not None:
                return answer
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
            self.longest_tool = max(self.longest_tool or 0.0, time.monotonic() - began)
        return {}

    def _expected_tool_seconds(self) -> float:
        """What the segment's next tool call is expected to take: its longest call so far; before
        it has timed one, the previous segment's (unless even that call would not fit in this
        whole segment: judged by it, no call could ever start here)."""
        if self.longest_tool is not None:
            return self.longest_tool
        carried = self.request.expected_tool_seconds
        return carried if carried * _TOOL_TIME_FACTOR < self.request.deadline_seconds else 0.0

    def _cut_off_seconds(self) -> list[float]:
        """How long each tool call still running (its result not reported) has run."""
        now = time.monotonic()
        return [
            now - began
            for call, began in self.tool_started.items()
            if call not in self.tool_answered
        ]

    def _tool_estimate(self) -> float:
        """For the next segment: this segment's longest call, counting a call the hard stop
        cut off at least as long as it ran; the previous segment's when this one timed none."""
        timed = self.longest_tool
        base = self.request.expected_tool_seconds if timed is None else timed
        return max([base, *self._cut_off_seconds()])

    def _note_results(self, message: Any) -> None:
        """The tool calls whose results a message reports (a refused call's included)."""
        content = getattr(message, "content", None)
        for block in content if isinstance(content, list) else ():
            call = getattr(block, "tool_use_id", None)
            if isinstance(call, str):
                self.tool_answered.add(call)

    def _pid(self) -> int | None:
        return getattr(self.transport, "pid", None)

    def _kill(self) -> None:
        self.stop_mark.stopped = True
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
            pre_tool_use=self._pre_tool_use if segment or self.gate is not None else None,
            post_tool_use=self._post_tool_use if segment else None,
        )
        self.transport = open_transport(self.request, options)
        self.stop_mark.watch()  # before the SDK's reader task starts: it inherits the mark
        try:
            # Approvals: a resumed run that only carries out an allowed deferred call sends no
            # prompt (a queued one would make CLI 2.1.330 answer a deferral "Tool result
            # missing" instead of stopping; waiting.Settlement).
            prompt: Any = self._no_prompt() if self.request.no_prompt else self.request.prompt
            async for message in query(prompt=prompt, options=options, transport=self.transport):
                if segment:
                    self._note_results(message)
                self.request.on_message(message)
                if isinstance(message, ResultMessage):
                    self.result = message
                    self.reported.set()
                elif isinstance(message, AssistantMessage) and message.usage:
                    key = message.message_id or str(len(self.assistant_usage))
                    self.assistant_usage[key] = dict(message.usage)
        except Exception as exc:
            if self.result is None:  # an error result is followed by a ResultError: expected
                self.failure = exc
        finally:
            self.reported.set()

    async def _no_prompt(self) -> Any:
        """A prompt stream that sends nothing but keeps the CLI's stdin open until it has
        reported (its hooks are answered over stdin)."""
        await self.reported.wait()
        return
        yield

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
                num_turns=self._turns(int(result.num_turns or 0)),
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

    def _turns(self, reported: int) -> int:
        """The run's turns: the CLI's count, which for a run our hook paused also counts the
        turn it stopped before asking the model; such a run made as many model calls as it
        received assistant messages (each boundary costs the one model call it refused)."""
        return min(reported, len(self.assistant_usage)) if self.yielded else reported

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
            return AgentOutcome("segment", usage=usage, longest_tool_seconds=self.cut_estimate)
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
        deferred = deferred_from_result(result, self.gate)
        if deferred is not None:
            return AgentOutcome("deferred", usage=usage, deferred=deferred)
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


#: The former name of `cli_process.open_transport`.
_clean_transport = open_transport

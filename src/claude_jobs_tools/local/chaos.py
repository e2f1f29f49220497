"""The local stack with faults: AWS calls failing at random, workers killed and restarted.

    stack = ChaosStack(StackConfig(port=0), FaultPlan(rate=0.05, seed=7)).start()
    stack.aws_faults.enabled = True    # AWS faults from now on (provisioning ran without)
    stack.kill_job(job_id)             # the invocation running the job dies mid-run
    stack.restart_workers()            # stop the worker pool, start a fresh one
    stack.emulator_url                 # the emulator itself, for reads that must not fail

What each fault emulates, and how faithfully:

- AWS faults: every AWS call of the stack (API functions, workers, notifier, stream reader)
  goes through :class:`~.aws_faults.AwsFaultProxy` in front of the emulator.
- A killed worker: :func:`~.runtime.kill_invocation` raises an uncatchable exception in the
  invocation's thread and the job's CLI is ended with it (the worker's own clean-up ends the
  job's processes, as the process's death would). The invocation records nothing and answers
  nothing: the job stays `running` under its lease and its message comes back after the
  visibility timeout, as after a crash on Lambda. Unlike a crash, `finally` clean-ups run
  (sandbox removal, token revocation), which changes nothing another worker can observe.
- A swallowed invocation (issue 27): a worker invocation answered as a success before the
  worker ran it, as an agent that took it from the Lambda Runtime API would answer it
  (docs/adr/0001-runtime-api.md): the event source deletes its message and nobody runs the
  job; the reconciler must re-drive it. `swallow_rate` is the chance for each job's first
  invocation.
- A restart: the pool stops receiving, invocations still running after a grace period are
  killed as above, idle execution environments are dropped (cold starts follow), and a new
  pool starts.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from typing import Any

from claude_jobs.job_message import JobMessage

from .aws_faults import AwsFaultProxy, FaultPlan
from .runtime import kill_invocation
from .stack import LocalStack, StackConfig, StackError

__all__ = ["ChaosStack", "running_invocation"]

#: The frame of the worker that holds a claimed job while its agent runs.
_RUN_FRAME = "_run_claimed"
#: The frame of the worker while the job's agent runs.
_AGENT_FRAME = "run_agent"


def running_invocation(job_id: str) -> int | None:
    """The id of the thread whose invocation runs `job_id`'s agent now, or None."""
    for thread_id, frame in sys._current_frames().items():
        walker: Any = frame
        while walker is not None:
            if walker.f_code.co_name == _RUN_FRAME:
                job = walker.f_locals.get("job")
                if getattr(job, "job_id", None) == job_id:
                    return thread_id
            walker = walker.f_back
    return None


def _invocation_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("worker-") and t.name.endswith("-invoke") and t.is_alive()
    ]


def _in_agent_run(thread_id: int | None) -> bool:
    """Whether the thread is, at this instant, running a job's agent (the worker's
    `run.run_agent`): where a kill is what a crash does to a job. Elsewhere an exception raised
    into this process could leave state shared with the rest of the stack half changed (a lock
    held, a module half imported), which a real crash, ending the whole process, never does."""
    frame: Any = sys._current_frames().get(thread_id or -1)
    while frame is not None:
        if frame.f_code.co_name == _AGENT_FRAME and "/worker/" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class ChaosStack(LocalStack):
    def __init__(
        self,
        config: StackConfig | None = None,
        plan: FaultPlan | None = None,
        *,
        swallow_rate: float = 0.0,
    ):
        super().__init__(config)
        self._plan = plan or FaultPlan(rate=0.0)
        self._swallow_rate = swallow_rate
        self._swallow_rng = random.Random(self._plan.seed)  # noqa: S311 - a fault schedule
        self._seen_jobs: set[str] = set()
        self._swallow_lock = threading.Lock()
        #: Jobs whose invocation was answered for them before the worker ran it.
        self.swallowed: list[str] = []
        self.aws_faults: AwsFaultProxy | None = None
        self.emulator_url = ""
        self.kills = 0
        self.restarts = 0
        #: Per notifier invocation: (job ids of its records, the answer or the exception).
        self.notifier_calls: list[tuple[list[str], Any]] = []

    def _start_sources(self, settings: Any, functions_dir: Any) -> None:
        pool = self.pools.get("notifier")
        if pool is not None:
            invoke = pool.invoke

            def recorded(event: dict[str, Any], **kwargs: Any) -> Any:
                ids = [
                    str(((r.get("dynamodb") or {}).get("Keys") or {}).get("job_id", {}).get("S"))
                    for r in event.get("Records", [])
                ]
                try:
                    answer = invoke(event, **kwargs)
                except BaseException as exc:
                    self.notifier_calls.append((ids, repr(exc)))
                    raise
                self.notifier_calls.append((ids, answer))
                return answer

            pool.invoke = recorded  # type: ignore[method-assign]
        worker = self.pools.get("worker")
        if worker is not None and self._swallow_rate:
            run = worker.invoke

            def swallowing(event: dict[str, Any], **kwargs: Any) -> Any:
                if self._swallowed(event):
                    return {"batchItemFailures": []}  # a success: the message is deleted
                return run(event, **kwargs)

            worker.invoke = swallowing  # type: ignore[method-assign]
        super()._start_sources(settings, functions_dir)

    def _swallowed(self, event: dict[str, Any]) -> bool:
        """Whether this invocation (a job's first) is answered before the worker runs it."""
        fresh = []
        for record in event.get("Records", []):
            try:
                job_id = JobMessage.model_validate_json(record.get("body") or "{}").job_id
            except (ValueError, AttributeError):  # not a job message
                continue
            if job_id:
                fresh.append(job_id)
        with self._swallow_lock:
            fresh = [j for j in fresh if j not in self._seen_jobs]
            self._seen_jobs.update(fresh)
            if not fresh or self._swallow_rng.random() >= self._swallow_rate:
                return False
            self.swallowed.extend(fresh)
        return True

    def _start_moto(self) -> None:
        super()._start_moto()
        self.emulator_url = self.moto_url
        self.aws_faults = AwsFaultProxy(self.emulator_url, self._plan).start()
        # Everything the stack does with AWS from here on goes through the faults.
        self.moto_url = self.aws_faults.url

    def stop(self, grace_seconds: float = 10.0) -> int:
        abandoned = super().stop(grace_seconds)
        if self.aws_faults is not None:
            self.aws_faults.close()
            self.aws_faults = None
        return abandoned

    # ------------------------------------------------------------ worker faults

    def kill_job(self, job_id: str, wait_seconds: float = 5.0) -> bool:
        """Kill the invocation running `job_id`'s agent (waiting up to `wait_seconds` for
        one). True when one was killed."""
        deadline = time.monotonic() + wait_seconds
        while True:
            thread_id = running_invocation(job_id)
            if thread_id is not None and _in_agent_run(thread_id) and kill_invocation(thread_id):
                self.kills += 1
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def restart_workers(self, grace_seconds: float = 2.0) -> int:
        """Stop the worker pool, kill the agent runs still going after `grace_seconds` (and
        let invocations past their run record their job), drop the idle execution
        environments and start a new pool. Returns how many were killed."""
        consumer = self._consumer
        if consumer is None:
            raise StackError("the stack is not started")
        running = _invocation_threads()
        consumer.stop(grace_seconds)
        killed = 0
        for thread in running:
            if (
                thread.is_alive()
                and _in_agent_run(thread.ident)
                and kill_invocation(thread.ident or -1)
            ):
                killed += 1
        self.kills += killed
        for thread in running:  # those past their agent run record their job and end
            thread.join(timeout=30)
        self.pools["worker"].drop_idle()
        from .workers import QueueConsumer

        self._consumer = QueueConsumer(
            self.pools["worker"],
            consumer.queue_url,
            consumer.queue_arn,
            count=self.config.workers,
        )
        self._consumer.start()
        self.restarts += 1
        return killed

"""Fork chains (issue 20): while the agent runs, the worker reaps the zombies re-parented to it
and counts the job's live processes.

The worker is a child subreaper (`containment.py`), so every generation of a fork chain that
outlives its parent becomes the worker's child, and its zombie the worker's to collect. Until
now only the sweep after the job did that; a chain of a few thousand generations filled the pid
table during the job. Now a thread tends the job's processes every `PROCESS_WATCH_SECONDS`:
zombies are reaped at once, and a job with more than `AGENT_MAX_PROCESSES` live processes is
tripped: its processes are swept (frozen and killed) at once and the job ends `failed` with
`too_many_processes`. As root, the kernel also refuses the job's uid more tasks than its
RLIMIT_NPROC (`isolation.spawn_as`), so a fork bomb cannot outrun the count between two looks.
"""

from __future__ import annotations

import logging
import threading

from ..models import JobErrorInfo
from .containment import JobScope, ProcessSweeper

log = logging.getLogger(__name__)

TOO_MANY_PROCESSES = "too_many_processes"


class ProcessWatch:
    def __init__(
        self, sweeper: ProcessSweeper, scope: JobScope, max_processes: int, interval: float
    ) -> None:
        self._sweeper = sweeper
        self._scope = scope
        self._max = max_processes
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-watch", daemon=True)
        #: Set once the job had more live processes than allowed (the job then ends).
        self.tripped = False
        self.peak = 0

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                alive = self._sweeper.tend(self._scope)
            except Exception as exc:  # a failed look is not a reason to stop the job
                log.warning("process watch failed: %s", type(exc).__name__)
                continue
            self.peak = max(self.peak, alive)
            if alive > self._max and not self.tripped:
                self.tripped = True
                log.warning("the agent ran %s processes (at most %s): stopped", alive, self._max)
                try:
                    self._sweeper.sweep(self._scope)  # the CLI too: the run ends now
                except Exception as exc:
                    log.warning("stopping the agent's processes failed: %s", type(exc).__name__)

    def error(self) -> JobErrorInfo:
        return JobErrorInfo(
            code=TOO_MANY_PROCESSES,
            message=(
                f"The agent ran more than {self._max} processes at once (AGENT_MAX_PROCESSES; "
                f"{self.peak} seen): a fork chain or fork bomb. Its processes were ended."
            ),
        )

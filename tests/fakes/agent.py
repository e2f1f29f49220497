"""The scripted agent runner the tests use: the one in `claude_jobs_tools.scripted_agent`,
which the benchmarks use too."""

from claude_jobs_tools.scripted_agent import (
    Finish,
    PollThenAnswer,
    RaiseFault,
    ScriptedRunner,
    Step,
    WaitForStop,
)

__all__ = ["Finish", "PollThenAnswer", "RaiseFault", "ScriptedRunner", "Step", "WaitForStop"]

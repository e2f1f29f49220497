"""Every job option reaches everything it must: the CLI's command line (through the SDK's
options), the warm profile, the client and `claude-jobs submit` — or its `RunOption` says why
not (`Excluded(reason)`). A new option that is not wired fails here.

Each option is set to its `RunOption.example` (a value other than its default) and followed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from claude_jobs.job_options import Excluded, JobOptions, RunOption, default_of, run_options
from claude_jobs.models import Job, JobStatus
from claude_jobs.worker.agent import AgentRequest, Launch, launch_of, sdk_options
from claude_jobs.worker.warm import WarmProfile
from claude_jobs_client import Client
from claude_jobs_client._options import OPTION_NAMES
from claude_jobs_client._options import JobOptions as ClientJobOptions
from claude_jobs_tools.cli.main import app
from claude_jobs_tools.cli.options import flag_of, with_job_options

OPTIONS = dict(run_options())
NAMES = list(OPTIONS)


def _with_example(name: str) -> JobOptions:
    # An option that needs another (pull_request: repository) is set with that one's example.
    needed = {other: OPTIONS[other].example for other in OPTIONS[name].needs}
    return JobOptions.model_validate({**needed, name: OPTIONS[name].example})


def _launch(tmp_path: Path, options: JobOptions) -> Launch:
    request = AgentRequest(
        job_id="j-1",
        prompt="",
        system_prompt=None,
        options=options,
        model="claude-sonnet-4-5",
        cli=tmp_path / "claude",
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
        deadline_seconds=60,
    )
    return launch_of(request, sdk_options(request))


def _job(options: JobOptions) -> Job:
    return Job(
        job_id="j-1",
        tenant_id="acme",
        status=JobStatus.RUNNING,
        created_at=datetime.now(UTC),
        options=options,
        session_id="0b8e4a52-4c1e-4bd5-9a55-0f2a3c1d9e77",
        segments=1,
    )


def test_every_option_has_run_metadata_with_a_valid_example_and_reasons_for_exclusions() -> None:
    assert list(JobOptions.model_fields) == NAMES
    for name, option in OPTIONS.items():
        assert isinstance(option, RunOption)
        assert _with_example(name) != JobOptions(), f"{name}: its example is its default"
        for target in (option.sdk, option.warm):
            if isinstance(target, Excluded):
                assert len(target.reason) >= 10, f"{name}: say why it is excluded"


@pytest.mark.parametrize("name", NAMES)
def test_an_option_reaches_the_clis_command_line_unless_excluded(name: str, tmp_path: Path) -> None:
    # Given the default options and the same with this option set
    default, changed = _launch(tmp_path, JobOptions()), _launch(tmp_path, _with_example(name))
    # Then the CLI the SDK starts differs, unless the option is excluded from the SDK's
    if isinstance(OPTIONS[name].sdk, Excluded):
        assert changed == default, f"{name} is excluded from the SDK's options but reaches them"
    else:
        assert changed.command != default.command, f"{name} does not reach the SDK's options"


@pytest.mark.parametrize("name", NAMES)
def test_a_warm_cli_for_the_job_is_started_exactly_as_its_own(name: str, tmp_path: Path) -> None:
    # Given a job that sets this option
    options = _with_example(name)
    profile = WarmProfile.of(_job(options))
    warm = OPTIONS[name].warm
    if warm == "cold":
        # Then a job that carries it on its command line is never warm-started
        assert profile is None
        return
    assert profile is not None
    # Then the CLI started ahead from its profile is the one the job would start
    assert _launch(tmp_path, profile.options()) == _launch(tmp_path, options), (
        f"{name} reaches the CLI's command line but not the warm profile"
    )
    if warm == "profile":
        assert profile != WarmProfile.of(_job(JobOptions()))
        assert getattr(profile.options(), name) == getattr(options, name)
    else:  # excluded: not on the command line at all
        assert isinstance(warm, Excluded)
        assert _launch(tmp_path, options) == _launch(tmp_path, JobOptions())


def test_the_clients_typed_options_are_the_jobs() -> None:
    assert tuple(NAMES) == OPTION_NAMES
    assert list(ClientJobOptions.__annotations__) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_client_sends_an_option(name: str) -> None:
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(202, json={"job_id": "j-1", "status": "queued"})

    with Client("http://api.test", "k", transport=httpx.MockTransport(answer)) as api:
        api.submit("hi", **{name: OPTIONS[name].example})
    assert sent == [{"prompt": "hi", name: OPTIONS[name].example}]


def _as_flag_value(value: Any) -> str:
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return json.dumps(value)  # a list of objects: JSON
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


@pytest.mark.parametrize("name", NAMES)
def test_claude_jobs_submit_takes_an_option_as_a_flag(name: str) -> None:
    flag = flag_of(name, OPTIONS[name])
    # Given the real `submit` command: it has the flag
    command = typer.main.get_command(app).commands["submit"]  # type: ignore[attr-defined]
    assert any(flag in param.opts for param in command.params), f"submit has no {flag}"
    # And a command with the same job-option flags gets the option parsed as the API takes it
    seen: dict[str, Any] = {}
    probe = typer.Typer()

    @probe.command()
    @with_job_options
    def run(prompt: str, options: dict[str, Any]) -> None:
        seen.update(options)

    result = CliRunner().invoke(probe, ["hi", flag, _as_flag_value(OPTIONS[name].example)])
    assert result.exit_code == 0, result.output
    assert seen == {name: OPTIONS[name].example}
    assert default_of(name) != OPTIONS[name].example

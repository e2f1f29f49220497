"""The worker as its image runs it: exactly the files the Dockerfile copies, as a non-root
user, code directory read-only, HOME unset, only /tmp writable (no Docker engine here, so the
image's layout is rebuilt from the Dockerfile's COPY lines)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.wiring import Container
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.worker.conftest import REAL_KEY, sqs_event
from tests.worker.image_layout import (
    DOCKERFILE,
    ROOT,
    RUNTIME_USER,
    SENTINEL_SECRET,
    WARM_HARNESS,
    as_runtime_user,
    copied_files,
    kill_all,
    live_processes_with,
    required_runtime_python,
    run_warm,
    worker_env,
)


def test_the_dockerfile_copies_the_handler_and_the_shared_package() -> None:
    # Given the worker's Dockerfile
    text = DOCKERFILE.read_text()
    # Then it builds on the arm64 Lambda Python image, runs handler.lambda_handler, and
    # copies the handler and the shared package into the task root
    assert re.search(r"^FROM --platform=linux/arm64 public\.ecr\.aws/lambda/python:", text, re.M)
    assert re.search(r'^CMD \["handler\.lambda_handler"\]', text, re.M)
    assert dict(copied_files()) == {
        "src/claude_jobs": "claude_jobs",
        "functions/worker/handler.py": "handler.py",
    }


def test_the_image_requirements_pin_the_locked_versions() -> None:
    # Given the image's requirements and the project's lock
    def pins(path: Path) -> dict[str, str]:
        found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", path.read_text(), re.M)
        return {name.lower().replace("_", "-"): version for name, version in found}

    image = pins(ROOT / "functions" / "worker" / "requirements.txt")
    lock = pins(ROOT / "requirements" / "dev.lock")
    # Then the image installs the worker's SDK, and every version it pins is the locked one
    assert "claude-agent-sdk" in image and "aws-lambda-powertools" in image
    assert {name: v for name, v in image.items() if lock.get(name) != v} == {}
    # And nothing of the other groups (CLI, infra, dev) is in the image
    assert not {"moto", "aws-cdk-lib", "pytest", "typer"} & set(image)


@pytest.mark.cli
def test_a_job_succeeds_in_the_image_layout_as_a_non_root_user(
    task_root: Path, image_site: Path, moto_server: str
) -> None:
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    # Given the stack's resources in the emulator, and a job allowed Bash whose agent tries
    # to write into the code directory and to read every ancestor's environment
    with FakeAnthropic(api_key=REAL_KEY) as fake:
        provisioned = provision("img", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        job = container.job_service.submit(
            "tenant-img", JobRequest(prompt="Look around.", allowed_tools=["Bash"])
        ).job
        probe = (
            f"touch {task_root}/planted 2>/dev/null && echo CODE-WRITABLE || echo code-read-only; "
            "id -un; env; echo ===ANCESTORS===; p=$$; "
            'while [ "$p" -gt 1 ]; do '
            'if out=$(tr "\\0" "\\n" < /proc/$p/environ 2>&1); then echo "pid $p readable"; '
            'echo "$out"; else echo "pid $p denied"; fi; '
            "p=$(awk '{print $4}' /proc/$p/stat); done"
        )
        fake.script(ToolUse("Bash", {"command": probe}), Text("looked"))
        settings = provisioned.settings
        env = worker_env(task_root, image_site, moto_server, settings, fake.url)
        # When the worker handles the job's message as the runtime user, HOME unset
        assert "HOME" not in env
        run = subprocess.run(
            [python, "-S", "-c", WARM_HARNESS],
            input=json.dumps(sqs_event(job)),
            **as_runtime_user(),
            cwd=task_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        answer = json.loads(run.stdout.split("ANSWER", 1)[1])
        worker_pid = int(run.stdout.split("WORKER_PID", 1)[1].split()[0])
        # Then the job succeeded there
        assert answer == {"batchItemFailures": []}, run.stderr[-3000:]
        done = container.job_repository.get(job.job_id)
        assert done is not None and done.status is JobStatus.SUCCEEDED, done
        assert done.result is not None and done.result.text == "looked"
        # And the agent, the same user as the worker, could neither write the code nor read
        # the worker's environment (it is non-dumpable), and its own holds no secret
        output = fake.message_requests[1].tool_results()[0]["content"]
        assert "code-read-only" in output and "CODE-WRITABLE" not in output
        assert output.splitlines()[1] == RUNTIME_USER
        assert f"pid {worker_pid} denied" in output
        assert SENTINEL_SECRET not in output and REAL_KEY not in output
        assert "AWS_" not in output.split("===ANCESTORS===")[0]
        assert {r.headers["x-api-key"] for r in fake.message_requests} == {REAL_KEY}


#: Watches every environment and sandbox file it can read; logs what it saw, with ticks.
WATCHER = """import glob, sys, time
log, end = sys.argv[1], time.time() + 30
while time.time() < end:
    seen = []
    for path in glob.glob('/proc/[0-9]*/environ') + glob.glob('/tmp/claude-job-*/**',
                                                              recursive=True):
        try:
            seen.append(open(path, 'rb').read().decode('utf-8', 'replace'))
        except OSError:
            pass
    with open(log, 'a') as out:
        out.write('\\n'.join(seen) + '\\nTICK\\n')
    time.sleep(0.002)
"""


#: Polls every process's environment for a secret; notes where it saw it.
OBSERVER = """import glob, time
end = time.time() + 60
while time.time() < end:
    for path in glob.glob('/proc/[0-9]*/environ'):
        try:
            data = open(path, 'rb').read()
        except OSError:
            continue
        if b'{secret}' in data:
            open('{out}', 'a').write(path + chr(10))
"""


@pytest.mark.cli
@pytest.mark.parametrize("warm_start", [False, True], ids=["cold", "warm-start"])
def test_in_a_warm_image_nothing_of_a_job_survives_into_the_next(
    task_root: Path, image_site: Path, moto_server: str, shared_dir: Path, warm_start: bool
) -> None:
    """Warm start on: the second job (the same options as the first) runs in the CLI the
    worker started after the first job; the first agent's daemons and watcher are gone by
    then, and the warm CLI holds nothing of the first job."""
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision
    from tests.worker.test_hostile_agent import ESCAPES, marker

    # Given a first job whose agent (the same user as the worker) leaves every kind of
    # daemon behind, among them a watcher of every environment and sandbox file it can read
    watcher, log = shared_dir / "watcher.py", shared_dir / "watch.log"
    watcher.write_text(WATCHER)
    log.touch()
    os.chmod(log, 0o666)  # noqa: S103 - the agent writes the log
    m = marker()
    leave = [ESCAPES[name].format(m=m) for name in sorted(ESCAPES)]
    # And its own calls, with its token, to what the proxy must not forward
    leave.append(
        'for p in v1/messages/batches v1/files v1/models "v1/messages/%2e%2e/files"; do '
        'curl -s -o /dev/null -w "$p %{http_code}\\n" -X POST -H "x-api-key: $ANTHROPIC_API_KEY" '
        '-d "{}" "$ANTHROPIC_BASE_URL/$p"; done'
    )
    scratch = shared_dir / "scratch"
    scratch.mkdir(mode=0o777)
    os.chmod(scratch, 0o777)  # noqa: S103 - the runtime user writes here
    leave.append(f"echo planted > {scratch}/left-{m}; mkdir -p {scratch}/d-{m}/deep")
    leave.append(f"setsid python3 {watcher} {log} {m} >/dev/null 2>&1 < /dev/null & sleep 0.3")
    # And an observer of the same user, started apart from the worker once its code is
    # loaded, that polls every process's environment for the worker's AWS secret
    observer_out = shared_dir / "observer.txt"
    observers: list[subprocess.Popen[bytes]] = []
    secret = f"aws-secret-{uuid.uuid4().hex}"  # this worker's alone

    def observe(_worker_pid: int) -> None:
        script = OBSERVER.format(secret=secret, out=observer_out)
        observers.append(subprocess.Popen(["/usr/bin/python3", "-c", script], **as_runtime_user()))

    with FakeAnthropic(api_key=REAL_KEY) as fake:
        prefix = "warmstart" if warm_start else "warm"
        provisioned = provision(prefix, secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        first = container.job_service.submit(
            "tenant-a", JobRequest(prompt="Leave.", allowed_tools=["Bash"])
        ).job
        secret_prompt = f"tenant b's launch code is {uuid.uuid4().hex}"
        second = container.job_service.submit(
            "tenant-b",
            JobRequest(prompt=secret_prompt, allowed_tools=["Bash"] if warm_start else []),
        ).job
        fake.script(
            *(ToolUse("Bash", {"command": command}) for command in leave),
            Text("left"),
            Text("noted"),
        )
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url, secret)
        # (its scratch directory its own: other tests' workers of the same user may run at
        # the same time on this machine, which never happens in one Lambda environment)
        env["SCRATCH_DIRS"] = str(scratch)
        env["WARM_START"] = "true" if warm_start else "false"
        try:
            # When one warm worker process runs the first job, then the second
            run = run_warm(
                python, task_root, env, [sqs_event(first), sqs_event(second)], once_loaded=observe
            )
            ticks = log.read_text().count("TICK")
            time.sleep(0.3)
            # Then both jobs succeeded in that one process
            assert run.returncode == 0, run.stderr[-3000:]
            assert run.stdout.count('ANSWER {"batchItemFailures": []}') == 2, run.stdout
            # (with warm start, the second in the CLI started after the first had ended)
            adopted = (run.stdout + run.stderr).count("warm start: the job runs in the CLI")
            assert adopted == (1 if warm_start else 0), run.stdout[-3000:]
            for job in (first, second):
                done = container.job_repository.get(job.job_id)
                assert done is not None, job
                assert done.status is JobStatus.SUCCEEDED, done.error
            # And none of its own calls past the Messages API reached the upstream
            # (what the proxy forwards carries the real key; other probes of this machine's
            # loopback ports may reach the fake too)
            forwarded = [r for r in fake.requests if r.headers.get("x-api-key") == REAL_KEY]
            assert {r.path.split("?")[0] for r in forwarded} == {"/v1/messages"}
            # And every escape ran (none was refused), yet nothing the first agent started
            # is left, not even what ignores SIGTERM
            results = [r.tool_results()[0] for r in fake.message_requests[1 : len(leave) + 1]]
            assert [r["is_error"] for r in results] == [False] * len(leave), results
            refused = results[len(ESCAPES)]["content"]
            assert refused.count(" 404") + refused.count(" 400") == 4, refused
            assert live_processes_with(m) == []
            # And no file it left outside its sandbox is there for the next job
            assert sorted(p.name for p in scratch.iterdir()) == []
            # And the watcher ran during the first job only: it never saw the second job,
            # nor any environment holding the worker's credentials
            seen = log.read_text()
            assert ticks >= 1 and seen.count("TICK") == ticks
            assert secret_prompt not in seen and secret not in seen
            # And no process the worker started ever showed the credentials, not even for
            # the moment before an exec
            assert len(observers) == 1 and observers[0].poll() is None
            observers[0].kill()
            observers[0].wait()
            assert not observer_out.exists(), observer_out.read_text()[:500]
        finally:
            for process in observers:
                process.kill()
            kill_all(live_processes_with(m))


@pytest.mark.cli
@pytest.mark.skipif(os.geteuid() != 0, reason="making a setuid program needs root")
def test_a_process_that_cannot_be_ended_retires_the_environment_after_the_result(
    task_root: Path, image_site: Path, moto_server: str, shared_dir: Path
) -> None:
    python = required_runtime_python()
    from claude_jobs.worker.function import RETIRE_EXIT_CODE
    from claude_jobs_tools.provision import provision
    from tests.worker.test_hostile_agent import marker

    # Given a setuid-root interpreter the agent can run (a process that becomes root is out
    # of reach of the worker's user), and a job whose agent detaches one
    setuid_python = shared_dir / "python-suid"
    shutil.copy2(os.path.realpath("/usr/bin/python3"), setuid_python)
    os.chown(setuid_python, 0, 0)
    os.chmod(setuid_python, 0o4755)  # noqa: S103 - the point of the test
    m = marker()
    escape = (
        f"setsid {setuid_python} -c 'import os, time; os.setresuid(0, 0, 0); "
        f'os.execvp("sleep", ["sleep", "{m}"])\' >/dev/null 2>&1 < /dev/null & sleep 0.5'
    )
    with FakeAnthropic(api_key=REAL_KEY) as fake:
        provisioned = provision("retire", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        job = container.job_service.submit(
            "tenant-a", JobRequest(prompt="Stay.", allowed_tools=["Bash"])
        ).job
        later = container.job_service.submit("tenant-b", JobRequest(prompt="Next.")).job
        fake.script(ToolUse("Bash", {"command": escape}), Text("stayed"), Text("next"))
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
        try:
            # When a warm worker process is given that job and then another
            run = run_warm(python, task_root, env, [sqs_event(job), sqs_event(later)])
            assert live_processes_with(m), "the setuid process should have survived"
            # Then the job's result was recorded first
            done = container.job_repository.get(job.job_id)
            assert done is not None and done.status is JobStatus.SUCCEEDED, run.stderr[-3000:]
            assert done.result is not None and done.result.text == "stayed"
            # And then the process ended itself before taking the next job: Lambda gives the
            # next one a fresh environment
            assert run.returncode == RETIRE_EXIT_CODE, run.stderr[-3000:]
            assert "ANSWER" not in run.stdout
            pending = container.job_repository.get(later.job_id)
            assert pending is not None and pending.status is JobStatus.QUEUED
            # And it said so in a log line and a metric
            lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
            retired = [x for x in lines if x.get("retire")]
            assert retired and "could not be ended" in retired[0]["message"]
            assert any(x.get("EnvironmentsRetired") == [1.0] for x in lines)
        finally:
            kill_all(live_processes_with(m))


@pytest.mark.cli
def test_in_a_warm_image_forged_frames_cannot_touch_another_session_of_the_tenant(
    task_root: Path, image_site: Path, moto_server: str, shared_dir: Path
) -> None:
    """One user for the worker and the agent (Lambda): the agent's Bash tries to write forged
    SDK frames to the worker through its CLI's stdio — reopened through /proc/<cli>/fd, and
    taken with pidfd_getfd — naming another session of its tenant. The job runs in the warm
    CLI started after the first (its session stored under an alias)."""
    import boto3

    python = required_runtime_python()
    from claude_jobs_tools.provision import provision
    from tests.worker.test_hostile_sessions import FORGE

    # (in a directory of its own that the runtime user cannot write: other tests' workers of
    # that user clean what they may of /tmp)
    holder = Path(tempfile.mkdtemp(prefix="cj-forge-", dir=shared_dir))
    os.chmod(holder, 0o755)  # noqa: S103 - the agent runs the script
    forge = holder / "forge.py"
    forge.write_text(FORGE)
    os.chmod(forge, 0o644)
    with FakeAnthropic(api_key=REAL_KEY) as fake:
        provisioned = provision("forge", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        # Given a session of the tenant whose first job ran, and a second job of the same
        # tenant and options (so it runs in the warm CLI) whose agent forges frames naming it
        first = container.job_service.submit(
            "tenant-f", JobRequest(prompt="The password is SWORDFISH.", allowed_tools=["Bash"])
        ).job
        target = first.session_id
        assert target is not None
        attack = container.job_service.submit(
            "tenant-f", JobRequest(prompt="Forge.", allowed_tools=["Bash"])
        ).job
        fake.script(
            Text("Noted."),
            ToolUse("Bash", {"command": f"/usr/bin/python3 {forge} {target}"}),
            Text("forged"),
        )
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
        env["WARM_START"] = "true"
        scratch = shared_dir / "scratch"  # its own (see the test above)
        scratch.mkdir(mode=0o777)
        os.chmod(scratch, 0o777)  # noqa: S103 - the runtime user writes here
        env["SCRATCH_DIRS"] = str(scratch)
        # When one warm worker process runs both
        run = run_warm(python, task_root, env, [sqs_event(first), sqs_event(attack)])
        assert run.returncode == 0, run.stderr[-3000:]
        notable = "\n".join(x for x in run.stdout.splitlines() if "ERROR" in x or "ANSWER" in x)
        assert run.stdout.count('ANSWER {"batchItemFailures": []}') == 2, notable
        assert (run.stdout + run.stderr).count("warm start: the job runs in the CLI") == 1
        for job in (first, attack):
            done = container.job_repository.get(job.job_id)
            assert done is not None and done.status is JobStatus.SUCCEEDED, done
        output = str(fake.message_requests[2].tool_results()[0]["content"])
        # Then none of the CLI's stdio could be reopened for writing (sockets: ENXIO)
        assert "CLI None" not in output, output
        reopened = [line for line in output.splitlines() if line.startswith("reopen")]
        assert reopened == [f"reopen {fd} refused 6" for fd in (0, 1, 2)], output
        # And what reached the worker anyway (pidfd_getfd, where the kernel allows it) was
        # dropped: the other session holds its own conversation only
        s3 = boto3.client("s3")
        bucket = provisioned.settings.results_bucket
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"sessions/tenant-f/{target}/")
        texts = [
            s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
            for o in listing.get("Contents", [])
        ]
        assert any("SWORDFISH" in text for text in texts)
        assert not any("FORGED-7f3a" in text for text in texts), texts
        if "getfd WROTE" in output:
            assert "for other sessions were dropped" in run.stdout + run.stderr


@pytest.mark.cli
def test_in_the_image_a_transcript_past_the_cap_ends_session_too_large_and_keeps_the_session(
    task_root: Path, image_site: Path, moto_server: str, shared_dir: Path
) -> None:
    """One user for the worker and the agent: a continuation's agent grows its transcript
    past SESSION_MAX_BYTES; the job ends `session_too_large`, and the next job still resumes
    the session's earlier conversation."""
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision
    from tests.worker.test_hostile_sessions import GROW

    with FakeAnthropic(api_key=REAL_KEY) as fake:
        provisioned = provision("grow", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
        env["SESSION_MAX_BYTES"] = str(512 * 1024)
        scratch = shared_dir / "scratch"
        scratch.mkdir(mode=0o777)
        os.chmod(scratch, 0o777)  # noqa: S103 - the runtime user writes here
        env["SCRATCH_DIRS"] = str(scratch)

        def run_one(prompt: str, tools: list[str], session_id: str | None) -> Any:
            job = container.job_service.submit(
                "tenant-g",
                JobRequest(prompt=prompt, allowed_tools=tools, session_id=session_id),
            ).job
            run = run_warm(python, task_root, env, [sqs_event(job)])
            assert run.returncode == 0, run.stderr[-3000:]
            done = container.job_repository.get(job.job_id)
            assert done is not None
            return done

        # Given a session whose first job ran
        fake.script(Text("I will remember PINEAPPLE."))
        first = run_one("Remember the word PINEAPPLE.", [], None)
        assert first.status is JobStatus.SUCCEEDED, first.error
        # When a continuation's agent appends 1 MB of lines to its transcript
        fake.script(ToolUse("Bash", {"command": GROW}), Text("grew"))
        grown = run_one("Grow.", ["Bash"], first.session_id)
        # Then it ends session_too_large
        assert "grown" in str(fake.message_requests[-1].tool_results()[0]["content"])
        assert grown.status is JobStatus.FAILED and grown.error is not None, grown
        assert grown.error.code == "session_too_large", grown.error
        # And the next job resumes the session's conversation
        fake.script(Text("PINEAPPLE"))
        third = run_one("Which word?", [], first.session_id)
        assert third.status is JobStatus.SUCCEEDED, third.error
        sent = json.dumps(fake.message_requests[-1].body["messages"])
        assert "Remember the word PINEAPPLE." in sent and "PPPPPPPPPP" not in sent

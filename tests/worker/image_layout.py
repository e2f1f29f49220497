"""The worker's image layout, rebuilt without Docker: the task root from the Dockerfile's COPY
lines (read-only for all), the image's own dependencies, a runtime user that is not root, and
the harness that runs a warm worker process the way Lambda does. The fixtures are the
image-layout tests' (`tests/worker/conftest.py` makes them available to every test here)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import packaging

ROOT = Path(__file__).resolve().parents[2]


DOCKERFILE = ROOT / "functions" / "worker" / "Dockerfile"


TASK_ROOT_VAR = "${LAMBDA_TASK_ROOT}"


#: Lambda runs the code as a non-root user: `nobody` when the tests run as root, else the tests'
#: own (already non-root) user.
RUNTIME_USER = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


SENTINEL_SECRET = "aws-secret-sentinel-7d1c0f9e2b"


def copied_files() -> list[tuple[str, str]]:
    """(source, path under the task root) of each COPY into ${LAMBDA_TASK_ROOT}."""
    copies = []
    for line in DOCKERFILE.read_text().splitlines():
        parts = shlex.split(line.strip()) if line.strip().startswith("COPY") else []
        if len(parts) == 3 and parts[2].startswith(TASK_ROOT_VAR):
            copies.append((parts[1], parts[2][len(TASK_ROOT_VAR) :].lstrip("/")))
    return copies


def runtime_python() -> str | None:
    """An interpreter of this Python version that the runtime user can execute."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.path.realpath(sys.executable), f"/usr/bin/python{version}"]
    candidates.append(f"/usr/local/bin/python{version}")
    for candidate in candidates:
        if not os.path.exists(candidate):
            continue
        try:
            probe = subprocess.run(
                [candidate, "-S", "-c", "import sys; print(sys.version_info[:2])"],
                user=RUNTIME_USER if os.geteuid() == 0 else None,
                capture_output=True,
                text=True,
                check=False,
            )
        except PermissionError:  # e.g. an interpreter under root's home
            continue
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


def required_runtime_python() -> str:
    """`runtime_python()`, or the test is skipped: no interpreter the runtime user may run."""
    python = runtime_python()
    if python is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that {RUNTIME_USER!r} may run")
    return python


def as_runtime_user() -> dict[str, Any]:
    """subprocess arguments that start a process as the runtime user, without root's groups."""
    if os.geteuid() != 0:
        return {}
    return {"user": RUNTIME_USER, "group": pwd.getpwnam(RUNTIME_USER).pw_gid, "extra_groups": []}


@pytest.fixture
def task_root() -> Iterator[Path]:
    """The image's task root rebuilt from the Dockerfile's COPY lines, read-only for all."""
    holder = Path(tempfile.mkdtemp(prefix="cj-image-"))
    os.chmod(holder, 0o711)  # noqa: S103 - the runtime user must reach the task root
    root = holder / "var-task"
    root.mkdir()
    for source, target in copied_files():
        src, dst = ROOT / source, root / target
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)  # read-only for all, as in Lambda
    yield root
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o700)
    shutil.rmtree(holder)


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def image_site() -> Path:
    """The image's dependencies only: functions/worker/requirements.txt (hashes checked)
    installed for this interpreter, cached under infra/.build across sessions."""
    return packaging.cached_install(packaging.WORKER_REQUIREMENTS, packaging.HOST)


#: Runs the handler the way the Lambda runtime would, from the task root, for each event (one
#: JSON per line) in a row, as a warm Lambda environment is; prints each answer.
WARM_HARNESS = """
import json, os, sys
sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
import handler

class Context:
    aws_request_id = "image-test"
    function_name = "claude-jobs-worker"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:claude-jobs-worker"
    def get_remaining_time_in_millis(self):
        return 900_000

print("WORKER_PID", os.getpid(), flush=True)
for line in sys.stdin:
    answer = handler.lambda_handler(json.loads(line), Context())
    print("ANSWER", json.dumps(answer), flush=True)
"""


def own_scratch(env: dict[str, str], shared_dir: Path) -> None:
    """The worker's scratch and sandbox directories its own, under `shared_dir` (out of /tmp):
    other tests' workers of the same user may run at the same time on this machine and clear
    what is theirs in /tmp, as never happens in one Lambda environment."""
    scratch = shared_dir / "scratch"
    scratch.mkdir(mode=0o777, exist_ok=True)
    scratch.chmod(0o777)
    env["SCRATCH_DIRS"] = str(scratch)
    sandboxes = shared_dir / "sandboxes"
    sandboxes.mkdir(exist_ok=True)
    sandboxes.chmod(0o1777)
    env["TMPDIR"] = str(sandboxes)


def worker_env(
    task_root: Path,
    site: Path,
    moto_server: str,
    settings: Any,
    upstream: str,
    secret: str = SENTINEL_SECRET,
) -> dict[str, str]:
    """The worker's environment as Lambda sets it (credentials included), HOME unset; its
    scratch directory (`SCRATCH_DIRS`, `TMPDIR`) its own, beside the task root: other processes
    of this machine write to /tmp meanwhile, which never happens in one Lambda environment, and
    a worker clearing what appeared in /tmp during a job would remove (or fail on) theirs."""
    scratch = task_root.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    os.chmod(scratch, 0o777)  # noqa: S103 - the runtime user writes here
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(site),
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": "handler.lambda_handler",
        "AWS_LAMBDA_FUNCTION_NAME": "claude-jobs-worker",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_SESSION_TOKEN": "testing",
        "JOBS_TABLE": settings.jobs_table,
        "RESULTS_BUCKET": settings.results_bucket,
        "ANTHROPIC_SECRET_ID": settings.anthropic_secret_id,
        "ANTHROPIC_BASE_URL": upstream,
        "AGENT_MAX_RETRIES": "0",
        "POWERTOOLS_SERVICE_NAME": "claude-jobs-worker",
        "POWERTOOLS_METRICS_NAMESPACE": "ClaudeJobs",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "SCRATCH_DIRS": str(scratch),
        "TMPDIR": str(scratch),
    }


def run_warm(
    python: str,
    task_root: Path,
    env: dict[str, str],
    events: list[dict[str, Any]],
    *,
    once_loaded: Callable[[int], None] = lambda pid: None,
) -> subprocess.CompletedProcess[str]:
    """One worker process as the runtime user, handling `events` one after another;
    `once_loaded(pid)` runs when its handler module is loaded, before the first event."""
    process = subprocess.Popen(
        [python, "-S", "-c", WARM_HARNESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **as_runtime_user(),
        cwd=task_root,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if first.startswith("WORKER_PID"):
        once_loaded(int(first.split()[1]))
    stdout, stderr = process.communicate(
        "".join(json.dumps(event) + "\n" for event in events), timeout=180
    )
    return subprocess.CompletedProcess(process.args, process.returncode, first + stdout, stderr)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory under /tmp that the runtime user may write to."""
    path = Path(tempfile.mkdtemp(prefix="cj-image-hostile-"))
    os.chmod(path, 0o777)  # noqa: S103 - the runtime user writes here
    yield path
    shutil.rmtree(path, ignore_errors=True)


def live_processes_with(text: str) -> list[int]:
    from claude_jobs.worker.containment import process_table

    found = []
    for pid, info in process_table().items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if info.alive and text.encode() in cmdline:
            found.append(pid)
    return found


def kill_all(pids: list[int]) -> None:
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

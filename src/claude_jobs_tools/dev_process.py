"""`claude-jobs dev` as a child process: a free port, a clean environment, start, ready, stop.

The one launcher of the local stack for what drives it from outside over HTTP: the fuzzer
(`claude_jobs_tools.fuzz`), the end-to-end benchmarks and the e2e tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Variables that would change the stack's mode (a real key, a deployed API, AWS credentials).
STACK_PREFIXES = ("ANTHROPIC_", "CLAUDE_JOBS_", "AWS_")
READY_SECONDS = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def executable(name: str) -> str:
    """A console script of this virtualenv (`claude-jobs`, `st`)."""
    return str(Path(sys.executable).with_name(name))


def clean_env(
    *, drop: Sequence[str] = STACK_PREFIXES, keep: Sequence[str] = (), **extra: str
) -> dict[str, str]:
    """This process's environment without the variables starting with `drop` (except those in
    `keep`), this virtualenv's bin first on PATH, unbuffered Python, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop)) or k in keep}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class DevProcess:
    """A running `claude-jobs dev`; its output goes to `log`."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def exports(self) -> dict[str, str]:
        """The variables the banner's `export A=B C=D` lines tell a second shell to set."""
        found: dict[str, str] = {}
        for line in self.output().splitlines():
            words = line.split()
            if words[:1] == ["export"]:
                found.update(w.partition("=")[::2] for w in words[1:] if "=" in w)
        return found

    def ready(self) -> bool:
        """Ready as the contract says: /v1/health answers 200 and the banner is out."""
        import httpx  # here: free_port and clean_env stay cheap to import

        try:
            healthy = httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False
        return healthy and "ready: " in self.output()

    def wait_ready(self, timeout: float = READY_SECONDS) -> DevProcess:
        """Block until ready; stop it and raise RuntimeError when it exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"claude-jobs dev exited {self.process.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stack was not ready in time:\n{self.output()}")
            time.sleep(0.2)
        return self

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C (SIGINT), then SIGKILL after `timeout`; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_dev(
    workdir: Path,
    env: dict[str, str],
    *,
    workers: int = 2,
    args: Sequence[str] = (),
    ready_seconds: float = READY_SECONDS,
) -> DevProcess:
    """`claude-jobs dev --port <free> --workers N *args` in `workdir`, once it is ready."""
    port = free_port()
    log = workdir / f"dev-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [executable("claude-jobs"), "dev", "--port", str(port), "--workers", str(workers),
             *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )  # fmt: skip
    return DevProcess(process, f"http://127.0.0.1:{port}", log).wait_ready(ready_seconds)

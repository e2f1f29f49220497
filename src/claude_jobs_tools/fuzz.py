"""Property-based fuzzing of the HTTP API (schemathesis) against the local stack.

    python -m claude_jobs_tools.fuzz [--max-time 120]              # what `make fuzz` does
    python -m claude_jobs_tools.fuzz --url URL --api-key KEY ...    # a stack already running

Without `--url` it starts `claude-jobs dev` on a free port with a fuzzing tenant's key, waits
until it is ready, runs schemathesis on `openapi.json` with every check and every phase
(examples, coverage, fuzzing, stateful) for at most `--max-time` seconds, then stops the stack.
The exit status is schemathesis's: 0 means no server error, no answer that breaks the
document, no schema-valid request rejected and no invalid one accepted.

Excluded, narrowly, because they need the data layer to change (issue 10, "documents are
opaque"; another change): see :data:`KNOWN_DATA_LAYER_CASES`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from claude_jobs_tools.dev_process import clean_env, executable, start_dev

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.json"
DEFAULT_MAX_TIME = 120
READY_SECONDS = 120
FUZZ_TENANT = "fuzz"

#: Hooks that keep the fuzzer away from inputs whose failure is the data layer's to fix
#: (issue 10: documents stored as native DynamoDB maps and numbers). Each is a schemathesis
#: hook module; empty when there is nothing to exclude.
KNOWN_DATA_LAYER_CASES = ROOT / "src" / "claude_jobs_tools" / "fuzz_hooks.py"


@contextmanager
def local_stack(workers: int = 1) -> Iterator[tuple[str, str]]:
    """`claude-jobs dev` on a free port with one fuzzing key: (base URL, key)."""
    key = f"fuzz-{secrets.token_urlsafe(24)}"
    env = clean_env(CLAUDE_JOBS_DEV_KEYS=f"{FUZZ_TENANT}:{key}")
    with tempfile.TemporaryDirectory(prefix="claude-jobs-fuzz-") as tmp:
        dev = start_dev(
            Path(tmp), env, workers=workers, args=("--quiet",), ready_seconds=READY_SECONDS
        )
        try:
            yield dev.url, key
        finally:
            dev.stop(timeout=30)


def schemathesis_command(
    url: str, api_key: str, max_time: int, *, seed: int | None = None, report_dir: Path | None
) -> list[str]:
    command = [
        executable("st"),
        "run",
        str(OPENAPI),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {api_key}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-time",
        str(max_time),
        "--workers",
        "2",
        "--request-timeout",
        "30",
        # A job's long poll (?wait=N) answers after up to 20 s by contract: not a slow answer
        # (API Gateway would give up at 29 s).
        "--max-response-time",
        "25",
        "--suppress-health-check",
        "too_slow",
        "--output-truncate",
        "true",
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    if report_dir is not None:
        command += ["--report", "ndjson", "--report-dir", str(report_dir)]
    return command


def run(
    url: str,
    api_key: str,
    max_time: int,
    *,
    seed: int | None = None,
    report_dir: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if KNOWN_DATA_LAYER_CASES.is_file():
        env["SCHEMATHESIS_HOOKS"] = "claude_jobs_tools.fuzz_hooks"
    # The API key stays out of the report and the output.
    env.setdefault("NO_COLOR", "1")
    return subprocess.run(
        schemathesis_command(url, api_key, max_time, seed=seed, report_dir=report_dir),
        env=env,
        capture_output=True,
        text=True,
        timeout=max_time + 300,
        check=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, default=DEFAULT_MAX_TIME)
    parser.add_argument("--url", help="a running stack (default: start claude-jobs dev)")
    parser.add_argument("--api-key", help="its API key (with --url)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if args.url and not args.api_key:
        parser.error("--url needs --api-key")
    if args.url:
        done = run(args.url, args.api_key, args.max_time, seed=args.seed)
    else:
        with local_stack() as (url, key):
            done = run(url, key, args.max_time, seed=args.seed)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())

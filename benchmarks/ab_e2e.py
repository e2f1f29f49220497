"""A/B of the local stack: another source tree against this one, in alternating blocks.

    git archive <commit> src functions | tar -x -C /tmp/base
    .venv/bin/python -m benchmarks.ab_e2e /tmp/base --rounds 8 --jobs 20 --blocks 4

Each block starts `claude-jobs dev` from one tree (the other tree's `src` first on
PYTHONPATH; its `functions/` is found next to it), runs `--rounds` paired one-job rounds against
the direct CLI and one drain of `--jobs` jobs (see `bench_e2e.py`), and stops it. Blocks
alternate base / this tree, so that the machine's load drifts hit both alike: on a shared
machine this is the comparison to trust, not two runs hours apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks import bench_e2e as e2e


def block(base: Path | None, rounds: int, jobs: int, upstream: str) -> tuple[list[float], float]:
    from claude_jobs_client import Client

    saved = os.environ.get("PYTHONPATH")
    if base is not None:
        os.environ["PYTHONPATH"] = str(base / "src")
    else:
        os.environ.pop("PYTHONPATH", None)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="claude-jobs-ab-") as workdir,
            e2e.local_stack(upstream, Path(workdir)) as stack,
            Client(stack.url, e2e.TENANTS["bench-a"], timeout=60) as client_a,
            Client(stack.url, e2e.TENANTS["bench-b"], timeout=60) as client_b,
        ):
            e2e.stack_job(client_a)
            e2e.direct_run(upstream)
            overheads: list[float] = []
            direct: list[e2e.Run] = []
            for index in range(rounds):
                if index % 2 == 0:
                    run = e2e.direct_run(upstream)
                    overheads.append(e2e.stack_job(client_a) - run.wall)
                else:
                    took = e2e.stack_job(client_a)
                    run = e2e.direct_run(upstream)
                    overheads.append(took - run.wall)
                direct.append(run)
            cpu = statistics.median(r.cpu for r in direct)
            return overheads, e2e.drain(stack, [client_a, client_b], jobs, cpu).ratio
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def main() -> None:
    from claude_jobs_tools.local.fake_anthropic import FakeAnthropic

    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab_e2e", description=__doc__)
    parser.add_argument("base", type=Path, help="a tree with src/ and functions/")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, tuple[list[float], list[float]]] = {"base": ([], []), "this": ([], [])}
    with FakeAnthropic(default=e2e.answer, api_key=e2e.API_KEY) as fake:
        for index in range(args.blocks):
            name = "base" if index % 2 == 0 else "this"
            overheads, ratio = block(
                args.base if name == "base" else None, args.rounds, args.jobs, fake.url
            )
            results[name][0].extend(overheads)
            results[name][1].append(ratio)
            print(
                f"{name}: overhead p50 {statistics.median(overheads) * 1000:.0f} ms,"
                f" drain of {args.jobs}: {ratio:.2f}x the CPU floor",
                flush=True,
            )
    for name, (overheads, ratios) in results.items():
        print(
            f"{name} overall: overhead p50 {e2e.percentile(overheads, 0.5) * 1000:.0f} ms,"
            f" p95 {e2e.percentile(overheads, 0.95) * 1000:.0f} ms;"
            f" drains {', '.join(f'{r:.2f}' for r in ratios)}x"
        )


if __name__ == "__main__":
    main()

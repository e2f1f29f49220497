"""Run every `benchmarks/bench_*.py` module (or those named on the command line)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import benchmarks


def discover() -> dict[str, str]:
    """Area name → module name, for every `bench_<area>` module of the package."""
    return {
        info.name.removeprefix("bench_"): f"benchmarks.{info.name}"
        for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_")
    }


def main(argv: list[str] | None = None) -> int:
    found = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "areas",
        nargs="*",
        help=f"of {', '.join(sorted(found))}; default: all but those run only by name "
        "(RUN_BY_DEFAULT = False: the reliability ledger, `make bench-reliability`)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per measurement")
    args = parser.parse_args(argv)
    unknown = set(args.areas) - set(found)
    if unknown:
        parser.error(
            f"no benchmark {', '.join(sorted(unknown))}; known: {', '.join(sorted(found))}"
        )
    ok = True
    for area in args.areas or sorted(found):
        module = importlib.import_module(found[area])
        if not args.areas and not getattr(module, "RUN_BY_DEFAULT", True):
            continue
        print(f"\n=== {area}: {getattr(module, 'DESCRIPTION', '')}".rstrip(": "), flush=True)
        ok = module.run(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

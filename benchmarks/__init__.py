"""Benchmarks, run by `make bench` (`python -m benchmarks`).

Each area adds a module here named `bench_<area>.py` with a `run(args) -> bool` function (True
when its targets were met) and an optional `DESCRIPTION`. `python -m benchmarks` runs them all,
or only those named: `python -m benchmarks api`.
"""

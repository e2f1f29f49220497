"""Test-only helpers shared by every test layer: ports and a socket blocker (`network`),
background HTTP servers (`servers`), one `Job` factory (`jobs`).

The local stack launcher (`claude-jobs dev` as a child process) ships with the tools, in
`claude_jobs_tools.dev_process`, since the fuzzer and the benchmarks use it too.
"""

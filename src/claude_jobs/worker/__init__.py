"""The worker: runs one queued job through the real Claude Code CLI.

- `processor` — the job's life: claim, run, record the terminal state (the domain logic), over
  `claims`, `run`, `recording`, `warm_pool` and `processed`; its dependencies in `ports`.
- `agent` — one agent run over claude-agent-sdk, with a deadline and a stop signal.
- `proxy` — the loopback endpoint that adds the real key to the CLI's Messages API calls.
- `sandbox` — the per-job directory (HOME, CLAUDE_CONFIG_DIR, working directory).
- `isolation` — the CLI's environment allowlist, the agent's identity and uid pool.
- `containment` — ends every process a job started; the worker as child subreaper.
- `scrub` — removes secrets from everything stored or logged.
"""

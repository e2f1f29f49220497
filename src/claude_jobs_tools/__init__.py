"""claude-jobs tools: everything around the service that runs on a developer's or operator's
machine and never ships to Lambda.

- :mod:`.cli` — the `claude-jobs` command (job client, key admin, triggers, `dev`);
- :mod:`.local` — the local stack: AWS emulator, HTTP front, function runtime, workers, the fake
  Messages API;
- :mod:`.provision` — creates the stateful resources from `claude_jobs.resources` (emulator,
  tests);
- :mod:`.api_gateway_events` — real-shaped API Gateway events (the local front and the tests);
- :mod:`.openapi` — writes `openapi.json` (`make openapi`).

It imports the runtime package `claude_jobs`, never the other way round, and may use the dev
dependencies (typer, rich, httpx, moto).
"""

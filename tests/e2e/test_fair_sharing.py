"""Fair sharing between tenants through `claude-jobs dev` (two workers, its default running share
of one job per tenant): one tenant's backlog never starves another tenant's job, and a tenant
over its pending cap is told to come back later (429 tenant_limit).

Its own stack and fake model: each answer takes WORK_SECONDS, so a backlog really occupies the
workers (the stand-in answers at once)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from claude_jobs_client import Client, is_terminal
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, RecordedRequest, Reply, Text

from .conftest import TENANTS, DevProcess, base_env, start_dev

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(600)]

WORK_SECONDS = 1.0
BACKLOG = 16
PENDING_CAP = 20
_WORK = re.compile(r"\[\[work:([A-Za-z0-9_.-]+)\]\]")


def slow_answer(request: RecordedRequest) -> Reply:
    found = _WORK.search(request.prompt_text())
    return Text(f"done {found.group(1) if found else '?'}", delay=WORK_SECONDS)


@pytest.fixture(scope="module")
def fair_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    with FakeAnthropic(default=slow_answer) as fake:
        env = base_env(
            ANTHROPIC_BASE_URL=fake.url,
            CLAUDE_JOBS_DEV_KEYS=",".join(f"{t}:{k}" for t, k in TENANTS.items()),
            TENANT_MAX_PENDING=str(PENDING_CAP),
        )
        dev = start_dev(tmp_path_factory.mktemp("fair"), env, workers=2)
        try:
            yield dev
        finally:
            assert dev.stop() == 0, dev.output()


def _statuses(client: Client, job_ids: list[str]) -> list[str]:
    return [str(client.get(job_id)["status"]) for job_id in job_ids]


def test_one_tenants_backlog_does_not_starve_another_tenants_job(fair_stack: DevProcess) -> None:
    with (
        Client(fair_stack.url, TENANTS["alpha"], timeout=60) as alpha,
        Client(fair_stack.url, TENANTS["beta"], timeout=60) as beta,
    ):
        # Given tenant alpha has a backlog of 16 jobs of about a second each
        backlog = [
            alpha.submit(f"[[work:a{i}-{uuid.uuid4().hex[:6]}]]", allowed_tools=[])["job_id"]
            for i in range(BACKLOG)
        ]
        # When tenant beta submits one small job right after
        started = time.monotonic()
        mine = beta.submit(f"[[work:b-{uuid.uuid4().hex[:6]}]]", allowed_tools=[])["job_id"]
        job = beta.wait(mine, timeout=300)
        beta_seconds = time.monotonic() - started
        alpha_done = sum(s == "succeeded" for s in _statuses(alpha, backlog))
        print(f"beta's job took {beta_seconds:.1f} s; {alpha_done} of alpha's {BACKLOG} done")
        # Then beta's job succeeds while most of alpha's backlog is still waiting
        assert job["status"] == "succeeded", job
        assert alpha_done <= BACKLOG // 4, (alpha_done, beta_seconds)
        # And alpha's backlog still drains completely, each job run once
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            jobs = [alpha.get(job_id) for job_id in backlog]
            if all(is_terminal(j) for j in jobs):
                break
            time.sleep(1)
        assert [j["status"] for j in jobs] == ["succeeded"] * BACKLOG
        assert all(j["attempts"] == 1 for j in jobs)


def test_a_tenant_over_its_pending_cap_gets_429_tenant_limit(fair_stack: DevProcess) -> None:
    # Given tenant alpha already has as many pending jobs as the cap allows
    headers = {"Authorization": f"Bearer {TENANTS['alpha']}"}
    accepted: list[str] = []
    refused: httpx.Response | None = None
    with httpx.Client(base_url=fair_stack.url, headers=headers, timeout=60) as http:
        for i in range(PENDING_CAP + 5):
            # When it submits more (distinct bodies, no retries)
            response = http.post(
                "/v1/jobs", json={"prompt": f"[[work:cap{i}]]", "allowed_tools": []}
            )
            if response.status_code == 202:
                accepted.append(response.json()["job_id"])
                continue
            refused = response
            break
        # Then a submission is refused with 429 tenant_limit, Retry-After and a problem body
        assert refused is not None, f"{len(accepted)} accepted, none refused"
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert int(refused.headers["retry-after"]) >= 1
        problem = refused.json()
        assert problem["type"].endswith(":tenant_limit") and problem["status"] == 429
        # (jobs that finished meanwhile made room: at most the cap is pending)
        with Client(fair_stack.url, TENANTS["alpha"]) as alpha:
            pending = _statuses(alpha, accepted)
        assert sum(s in ("queued", "running") for s in pending) <= PENDING_CAP
        # And another tenant is not affected
        other = http.post(
            "/v1/jobs",
            json={"prompt": "[[work:other]]", "allowed_tools": []},
            headers={"Authorization": f"Bearer {TENANTS['beta']}"},
        )
        assert other.status_code == 202, other.text
        # And once alpha's jobs have finished, it may submit again
        for job_id in accepted:
            http.post(f"/v1/jobs/{job_id}/cancel")
        again = http.post("/v1/jobs", json={"prompt": "[[work:again]]", "allowed_tools": []})
        assert again.status_code == 202, again.text

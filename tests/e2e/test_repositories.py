"""Repository in, pull request out (issue 24) on the local stack: `claude-jobs dev --githost`
(the Git host stand-in, real smart-HTTP Git, its demo repository, every tenant connected),
driven over HTTP with the real CLI running each job.

A job clones demo/hello, its agent edits it with Bash and Write, hunts for the tenant's
credential and pushes main and another repository; the worker's pull request carries the change
on `claude-jobs/<job_id>`. A tenant without a credential gets a clear error."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs_client import ApiError, Client
from claude_jobs_tools.local.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    ToolUse,
)
from tests.e2e.conftest import TENANTS, DevProcess, base_env, start_dev
from tests.e2e.test_triggers import emulator

pytestmark = pytest.mark.timeout(600)

KEY = "sk-ant-test-e2e-repositories-0123456789"
#: The agent's hunt (the demo token's prefix is all it knows of the credential; built from
#: two halves so that no command line or transcript holds it), its edits (Bash and Write),
#: and pushes where it may not.
HUNT = (
    "printf '%s%s' ghp_lo cal_ > $TMPDIR/p; "
    "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do "
    "grep -qaF -f $TMPDIR/p $f 2>/dev/null && echo FOUND:$f; done; "
    "grep -rlaF -f $TMPDIR/p $HOME . 2>/dev/null | sed 's/^/FOUND:/'; "
    "env | grep -aF -f $TMPDIR/p | sed 's/^/FOUND:env/'; "
    "git config --list | grep -aF -f $TMPDIR/p | sed 's/^/FOUND:config/'; "
    "rm $TMPDIR/p; "
    "git log --oneline | head -1; "
    "sed -i 's/hello, world/hello, pull request/' hello.py; git commit -qam mine; "
    "git push origin HEAD:main 2>&1 | grep rejected; "
    "git ls-remote {git}/demo/other 2>&1 | tail -1; "
    "echo hunt-done"
)


def answer(request: RecordedRequest) -> Reply:
    """`[[repo:<git url>]]`: a Write, then a Bash call (the hunt), then its output."""
    found = re.search(r"\[\[repo:(\S+)\]\]", request.prompt_text())
    if found is None:
        return Text("no marker")
    results = request.tool_results()
    if not results:
        return ToolUse("Write", {"file_path": "goodbye.py", "content": 'print("goodbye")\n'})
    if len(request.body["messages"]) <= 3:
        return ToolUse("Bash", {"command": HUNT.format(git=found.group(1))})
    return Text("HUNT:" + "\n".join(str(r["content"]) for r in results))


@pytest.fixture(scope="module")
def git_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DevProcess, FakeAnthropic]]:
    with FakeAnthropic(default=answer, api_key=KEY) as fake:
        env = base_env(
            ANTHROPIC_API_KEY=KEY,
            ANTHROPIC_BASE_URL=fake.url,
            CLAUDE_JOBS_DEV_KEYS=",".join(f"{t}:{k}" for t, k in TENANTS.items()),
        )
        dev = start_dev(tmp_path_factory.mktemp("gitstack"), env, args=("--githost",))
        yield dev, fake
        assert dev.stop() == 0, dev.output()


def _githost(dev: DevProcess) -> tuple[str, Path]:
    found = re.search(
        r"Git host\s+stand-in at (\S+) .*?bare repositories in (\S+)\)", dev.output(), re.S
    )
    assert found, dev.output()
    return found.group(1), Path(found.group(2))


def test_a_job_clones_edits_and_its_pull_request_carries_the_change(
    git_stack: tuple[DevProcess, FakeAnthropic],
) -> None:
    dev, _fake = git_stack
    git_url, root = _githost(dev)
    bare = root / "demo" / "hello.git"
    main_before = _git(bare, "rev-parse", "main")
    with Client(dev.url, TENANTS["alpha"], timeout=60) as alpha:
        # Given a job on the demo repository asking for a pull request
        job = alpha.submit(
            f"Say goodbye too [[repo:{git_url}]]",
            allowed_tools=["Bash", "Write", "Read"],
            repository={"url": f"{git_url}/demo/hello"},
            pull_request={"title": "Say goodbye"},
        )
        # When it ends
        done = alpha.wait(job["job_id"], timeout=240)
    # Then the agent found its clone, nothing of the credential, and main refused
    text = done["result"]["text"]
    assert "hunt-done" in text and "Initial commit" in text, text
    assert "FOUND" not in text, text
    assert "[remote rejected] HEAD -> main" in text and "may reach only demo/hello" in text, text
    assert _git(bare, "rev-parse", "main") == main_before
    # And the job succeeded with its pull request, whose branch carries both changes
    assert done["status"] == "succeeded", done
    pull = done["pull_request"]
    branch = f"claude-jobs/{job['job_id']}"
    assert pull["branch"] == branch and pull["number"] >= 1 and pull["url"]
    assert _git(bare, "rev-parse", branch) == pull["head_sha"]
    assert _git(bare, "show", f"{branch}:goodbye.py") == 'print("goodbye")'
    assert "hello, pull request" in _git(bare, "show", f"{branch}:hello.py")
    assert done.get("pull_request_skipped") is None


def test_a_tenant_without_a_credential_gets_a_clear_error(
    git_stack: tuple[DevProcess, FakeAnthropic],
) -> None:
    dev, fake = git_stack
    git_url, _ = _githost(dev)
    # Given tenant beta's GitHub credential removed
    emulator(dev, "secretsmanager").delete_secret(
        SecretId="claude-jobs/github/beta", ForceDeleteWithoutRecovery=True
    )
    with Client(dev.url, TENANTS["beta"], timeout=60) as beta:
        # When it submits a repository job
        job = beta.submit(
            f"Look [[repo:{git_url}]]",
            allowed_tools=["Bash"],
            repository={"url": f"{git_url}/demo/hello"},
        )
        done = beta.wait(job["job_id"], timeout=120)
        # And a job on a repository of another host is refused at submit
        with pytest.raises(ApiError) as refused:
            beta.submit("x", repository={"url": "https://gitlab.com/demo/hello"})
        assert refused.value.status == 422
    # Then it failed clearly, without running the agent
    assert done["status"] == "failed"
    assert done["error"]["code"] == "repository_unavailable"
    assert "no GitHub credential" in done["error"]["message"]
    assert not [r for r in fake.message_requests if job["job_id"] in str(r.body)]


def _git(bare: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={bare}", *args], capture_output=True, text=True, check=True
    ).stdout.strip()

"""Repository in, pull request out (issue 24) on the local stack: `claude-jobs dev --githost`
(the Git host stand-in, real smart-HTTP Git, its demo repository, its GitHub App, every tenant
connected through an installation of it), driven over HTTP with the real CLI running each job.

A job clones demo/hello, its agent edits it with Bash and Write, hunts for the tenant's
credential (the installation token minted for the job) and pushes main and another repository;
the worker's pull request carries the change on `claude-jobs/<job_id>`. A tenant without a
credential gets a clear error.

GitHub events: a signed `issue_comment` mentioning the handle starts a job whose pull request
carries its agent's file and whose one comment is updated when it ends; a comment on that pull
request starts a follow-up in the same session whose change fast-forwards the same branch (the
same pull request). A replayed delivery starts nothing; a bad signature is a 401."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_jobs.github.credentials import AppJwt, JobCredentials, SecretsManagerCredentials
from claude_jobs.github.events import COMMENT_PERMISSIONS
from claude_jobs.github.rest import GitHubRest
from claude_jobs_client import ApiError, Client
from claude_jobs_tools.githost.local import APP_KEY_SECRET_ID
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
#: The agent's hunt (the prefix of the installation token minted for the job is all it knows
#: of the credential; built from two halves so that no command line or transcript holds it),
#: its edits (Bash and Write), and pushes where it may not.
HUNT = (
    "printf '%s%s' gh s_ > $TMPDIR/p; "
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


#: A GitHub event's job: `[[gh:NAME]]` in its comment → the agent writes NAME.txt, then answers.
_GH = re.compile(r"\[\[gh:([a-z]+)\]\]")


def _latest_gh_marker(request: RecordedRequest) -> str | None:
    """The `[[gh:…]]` marker of the latest prompt in the conversation: a follow-up continues
    the earlier job's session, so its request holds the earlier prompt first."""
    for message in reversed((request.body or {}).get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in reversed(blocks or []):
            if isinstance(block, dict) and block.get("type") == "text":
                found = _GH.findall(str(block.get("text") or ""))
                if found:
                    return str(found[-1])
    return None


def answer(request: RecordedRequest) -> Reply:
    """`[[repo:<git url>]]`: a Write, then a Bash call (the hunt), then its output.
    `[[gh:NAME]]` (the latest prompt's): a Write of NAME.txt, then an answer."""
    gh = _latest_gh_marker(request)
    if gh is not None:
        if not request.tool_results():
            return ToolUse("Write", {"file_path": f"{gh}.txt", "content": f"{gh}\n"})
        return Text(f"wrote {gh}.txt")
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


# ---------------------------------------------------------------- GitHub events


def _events(dev: DevProcess) -> dict[str, Any]:
    """What the banner says of GitHub events: the App's id, the tenants' installations, the
    webhook secret's id (its value is read from the emulator, as the developer would)."""
    found = re.search(
        r"GitHub\s+events at POST (\S+) .*?id (\S+); installations: ([^)]*)\).*?"
        r"secret (\S+) in the emulated Secrets Manager",
        dev.output(),
        re.S,
    )
    assert found, dev.output()
    url, app_id, installations, secret_id = found.groups()
    assert url == f"{dev.url}/v1/github/events"
    secrets = emulator(dev, "secretsmanager")
    return {
        "url": url,
        "app_id": app_id,
        "installations": {
            tenant: int(number)
            for tenant, number in (item.split() for item in installations.split(", "))
        },
        "secret": secrets.get_secret_value(SecretId=secret_id)["SecretString"],
    }


def _comment_event(
    body: str, *, installation: int, number: int, pull_request: bool = False
) -> dict[str, Any]:
    """An `issue_comment` delivery by the collaborator `dev` on demo/hello."""
    issue: dict[str, Any] = {"number": number, "title": "Add a file", "body": "Please."}
    if pull_request:
        issue["pull_request"] = {"number": number}
    sender = {"login": "dev", "type": "User"}
    return {
        "action": "created",
        "issue": issue,
        "comment": {"id": number, "body": body, "user": sender},
        "repository": {"full_name": "demo/hello"},
        "installation": {"id": installation},
        "sender": sender,
    }


def _deliver(
    events: dict[str, Any], payload: dict[str, Any], delivery: str, secret: str | None = None
) -> httpx.Response:
    body = json.dumps(payload).encode()
    key = (secret if secret is not None else events["secret"]).encode()
    signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return httpx.post(
        events["url"],
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature,
            "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": delivery,
        },
        timeout=60,
    )


def _comments(dev: DevProcess, events: dict[str, Any], number: int) -> list[dict[str, Any]]:
    """The comments on demo/hello #number, read from the stand-in's REST API with an
    installation token of tenant alpha (minted as the notifier mints its own)."""
    git_url, _ = _githost(dev)
    secrets = emulator(dev, "secretsmanager")
    key = secrets.get_secret_value(SecretId=APP_KEY_SECRET_ID)["SecretString"]
    rest = GitHubRest(f"{git_url}/api")
    credentials = JobCredentials(
        SecretsManagerCredentials(secrets, "claude-jobs/github/"),
        rest,
        AppJwt(events["app_id"], lambda: key),
    )
    credential = credentials.for_job("alpha", "hello", COMMENT_PERMISSIONS)
    try:
        answer = httpx.get(
            f"{git_url}/api/repos/demo/hello/issues/{number}/comments",
            headers={"Authorization": f"Bearer {credential.token}"},
            timeout=30,
        )
    finally:
        credential.close()
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def _final_comment(
    dev: DevProcess, events: dict[str, Any], number: int, job_id: str
) -> list[dict[str, Any]]:
    """The issue's comments once the job's one says it ended (the notifier updates it)."""
    deadline = time.monotonic() + 90
    while True:
        comments = _comments(dev, events, number)
        if any(f"Job `{job_id}`: done." in c["body"] for c in comments):
            return comments
        assert time.monotonic() < deadline, comments
        time.sleep(1)


def test_a_github_comment_opens_a_pull_request_and_a_comment_on_it_updates_it(
    git_stack: tuple[DevProcess, FakeAnthropic],
) -> None:
    dev, fake = git_stack
    events = _events(dev)
    installation = events["installations"]["alpha"]
    _, root = _githost(dev)
    bare = root / "demo" / "hello.git"
    issue = 50  # no pull request of the stand-in has this number
    first_delivery = str(uuid.uuid4())

    # Given a comment by a collaborator with write access mentioning the handle on an issue
    # When GitHub delivers it, signed with the App's webhook secret
    comment = _comment_event(
        "@claude-jobs add a file [[gh:first]]", installation=installation, number=issue
    )
    started = _deliver(events, comment, first_delivery)

    # Then a job is started
    assert started.status_code == 202, started.text
    first_id = started.json()["job_id"]
    # And the same delivery again starts nothing more
    replayed = _deliver(events, comment, first_delivery)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"status": "ignored", "reason": "replayed_delivery"}

    with Client(dev.url, TENANTS["alpha"], timeout=60) as alpha:
        first = alpha.wait(first_id, timeout=240)
        # And the job succeeded with a pull request carrying its agent's file
        assert first["status"] == "succeeded", first
        pull = first["pull_request"]
        branch = f"claude-jobs/{first_id}"
        assert pull["branch"] == branch and pull["number"] >= 1, pull
        assert _git(bare, "rev-parse", branch) == pull["head_sha"]
        assert _git(bare, "show", f"{branch}:first.txt") == "first"
        # And the issue has ONE comment, updated when the job ended
        (comment,) = _final_comment(dev, events, issue, first_id)
        assert pull["url"] in comment["body"] and "wrote first.txt" in comment["body"]
        assert comment["edits"] >= 2, comment  # the job's id, then (running and) its end

        # When a collaborator mentions the handle on that pull request
        followed = _deliver(
            events,
            _comment_event(
                "@claude-jobs now add a second file [[gh:second]]",
                installation=installation,
                number=pull["number"],
                pull_request=True,
            ),
            str(uuid.uuid4()),
        )

        # Then a follow-up job is started and succeeds
        assert followed.status_code == 202, followed.text
        second_id = followed.json()["job_id"]
        second = alpha.wait(second_id, timeout=240)
    assert second["status"] == "succeeded", second
    # in the first job's session (its request carried the first job's conversation)
    continued = [r for r in fake.message_requests if _latest_gh_marker(r) == "second"]
    assert continued and all("[[gh:first]]" in json.dumps(r.body) for r in continued)
    # And its change fast-forwarded the same branch: the same pull request, a new head
    updated = second["pull_request"]
    assert (updated["number"], updated["url"], updated["branch"]) == (
        pull["number"],
        pull["url"],
        branch,
    )
    assert updated["head_sha"] != pull["head_sha"]
    assert _git(bare, "rev-parse", branch) == updated["head_sha"]
    assert _git(bare, "rev-parse", f"{branch}^") == pull["head_sha"]
    assert _git(bare, "show", f"{branch}:first.txt") == "first"
    assert _git(bare, "show", f"{branch}:second.txt") == "second"
    # And the pull request got the follow-up's one comment, updated when it ended
    (comment,) = _final_comment(dev, events, pull["number"], second_id)
    assert "wrote second.txt" in comment["body"]


def test_a_github_event_with_a_bad_signature_is_401_and_starts_nothing(
    git_stack: tuple[DevProcess, FakeAnthropic],
) -> None:
    dev, _fake = git_stack
    events = _events(dev)
    payload = _comment_event(
        "@claude-jobs add a file [[gh:forged]]",
        installation=events["installations"]["alpha"],
        number=51,
    )
    # When a delivery is signed with another secret
    answer = _deliver(events, payload, str(uuid.uuid4()), secret="not-the-webhook-secret")
    # Then it is refused as the API refuses, and nothing was started or commented
    assert answer.status_code == 401, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert _comments(dev, events, 51) == []

"""Repository in, pull request out (issue 24), through the real bundled CLI against the fake
Messages API and the Git host stand-in (real smart-HTTP Git).

The worker clones the job's repository before the agent starts; the agent's `git` reaches the
host only through the worker's broker with its job token; after the run the worker commits,
pushes `claude-jobs/<job_id>` and opens the pull request. A hostile agent hunts for the tenant's
credential (environment, Git config, files, /proc) and pushes `main` and another repository:
all of it fails. The worker runs in this process (as root: a uid per job; otherwise one user,
as on Lambda)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from claude_jobs.github.credentials import SecretsManagerCredentials, StoredCredential
from claude_jobs.models import JobStatus
from claude_jobs_tools.githost import GitHost
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.worker.conftest import WorkerStack, _worker_stack

pytestmark = pytest.mark.cli

#: The tenant's credential: what the agent must never see.
TENANT_TOKEN = "ghp_tenant_credential_5f0e1d2c3b4a"


@pytest.fixture
def githost() -> Iterator[GitHost]:
    with GitHost() as host:
        host.create_repository("acme/app")
        host.create_repository("acme/other")
        host.add_token(TENANT_TOKEN, {"acme/app", "acme/other"})
        yield host


@pytest.fixture
def repo_stack(
    aws: None, fake: FakeAnthropic, githost: GitHost, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerStack]:
    stacks = _worker_stack(
        "wg",
        fake,
        monkeypatch,
        github_git_url=githost.url,
        github_api_url=githost.api_url,
    )
    stack = next(stacks)
    prefix = stack.provisioned.settings.github_secret_prefix
    store = SecretsManagerCredentials(boto3.client("secretsmanager"), prefix)
    store.put("acme", StoredCredential(token=TENANT_TOKEN))
    yield stack
    for _ in stacks:
        pass


def _job(stack: WorkerStack, githost: GitHost, **extra: Any) -> Any:
    options: dict[str, Any] = {
        "allowed_tools": ["Bash", "Write", "Read"],
        "repository": {"url": f"{githost.url}/acme/app"},
        "pull_request": {"draft": True},
        **extra,
    }
    return stack.submit("Add a goodbye script", **options)


#: The agent's hunt: the credential's bytes anywhere it can read (built from two halves so
#: that no command line holds it), then pushes to `main` and to another repository.
HUNT = (
    "printf '%s%s' ghp_tenant_ credential_5f0e1d2c3b4a > $TMPDIR/p; "
    "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline /proc/[0-9]*/maps; do "
    "grep -qaF -f $TMPDIR/p $f 2>/dev/null && echo FOUND:$f; done; "
    "grep -rlaF -f $TMPDIR/p $HOME . 2>/dev/null | sed 's/^/FOUND:/'; "
    "env | grep -aF -f $TMPDIR/p | sed 's/^/FOUND:env/'; "
    "git config --list --show-origin | grep -aF -f $TMPDIR/p | sed 's/^/FOUND:config/'; "
    "rm $TMPDIR/p; "
    "git status --short | head -3; git log --oneline | head -1; "
    "echo 'print(\"goodbye\")' > goodbye.py && git add goodbye.py && git commit -qm mine; "
    "git push origin HEAD:main 2>&1 | grep rejected; "
    "git push origin HEAD:refs/heads/feature 2>&1 | grep rejected; "
    "git push origin :refs/heads/main 2>&1 | grep rejected; "
    "git ls-remote {git}/acme/other 2>&1 | tail -1; "
    "git push {git}/acme/other HEAD:refs/heads/claude-jobs/{job} 2>&1 | tail -1; "
    "curl -s -m 5 {git}/acme/app.git/info/refs?service=git-upload-pack | head -c 80; echo; "
    "echo hunt-done"
)


def test_a_job_clones_edits_and_its_pull_request_carries_the_change(
    repo_stack: WorkerStack, githost: GitHost
) -> None:
    # Given a job on acme/app asking for a pull request, whose agent hunts for the credential
    # and pushes where it may not
    job = _job(repo_stack, githost)
    main_before = githost.branch_sha("acme/app", "main")
    repo_stack.fake.script(
        ToolUse("Bash", {"command": HUNT.format(git=githost.url, job=job.job_id)}),
        Text("I added goodbye.py."),
    )
    # When the worker runs it
    repo_stack.deliver(job)
    done = repo_stack.get(job)
    # Then the agent found its clone (the repository's files, its history)
    (result,) = repo_stack.fake.message_requests[1].tool_results()
    output = str(result["content"])
    assert "hunt-done" in output, output
    assert "Initial commit" in output
    # And the credential nowhere it could read
    assert "FOUND" not in output, output
    assert TENANT_TOKEN not in output
    # And its pushes to main, another branch, a delete and another repository were refused
    assert output.count("[remote rejected]") == 3, output
    assert "(claude-jobs: push refused: a push may update only" in output
    assert githost.branch_sha("acme/app", "main") == main_before
    assert githost.branch_sha("acme/app", "feature") is None
    assert githost.branch_sha("acme/other", f"claude-jobs/{job.job_id}") is None
    assert "may reach only acme/app" in output
    # And the job succeeded with its pull request, whose branch carries the change
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.pull_request is not None
    branch = f"claude-jobs/{job.job_id}"
    assert done.pull_request.branch == branch
    assert githost.read_file("acme/app", branch, "goodbye.py") == 'print("goodbye")\n'
    assert githost.branch_sha("acme/app", branch) == done.pull_request.head_sha
    (pull,) = githost.pulls
    assert pull["number"] == done.pull_request.number and pull["draft"] is True
    assert pull["base"]["ref"] == "main"
    assert pull["title"] == "Add a goodbye script"
    assert "I added goodbye.py." in pull["body"]
    # And the only pushes that reached the host were to the job's branch
    assert {p["ref"] for p in githost.pushes} == {f"refs/heads/{branch}"}


def test_a_job_that_changes_nothing_has_no_pull_request(
    repo_stack: WorkerStack, githost: GitHost
) -> None:
    job = _job(
        repo_stack, githost, repository={"url": f"{githost.url}/acme/app.git", "ref": "main"}
    )
    repo_stack.fake.script(ToolUse("Bash", {"command": "cat README.md"}), Text("Read it."))
    repo_stack.deliver(job)
    done = repo_stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.pull_request is None and done.pull_request_skipped == "no_changes"
    assert githost.pulls == [] and githost.pushes == []


def test_a_tenant_without_a_credential_gets_a_clear_error_and_no_run(
    repo_stack: WorkerStack, githost: GitHost
) -> None:
    # Given a tenant that never connected GitHub
    repo_stack.tenant = "globex"
    job = _job(repo_stack, githost)
    # When its job runs
    repo_stack.deliver(job)
    done = repo_stack.get(job)
    # Then it fails clearly, and the agent never ran
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "repository_unavailable"
    assert "no GitHub credential" in done.error.message
    assert repo_stack.fake.message_requests == []


def test_an_unknown_repository_is_unavailable(repo_stack: WorkerStack, githost: GitHost) -> None:
    job = _job(repo_stack, githost, repository={"url": f"{githost.url}/acme/missing"})
    repo_stack.deliver(job)
    done = repo_stack.get(job)
    assert done.error is not None and done.error.code == "repository_unavailable"
    assert "acme/missing was not found" in done.error.message


# ---------------------------------------------------------------- the worker's steps alone


@contextmanager
def _repository_run(
    githost: GitHost,
    tmp_path: Any,
    app_key: str | None = None,
    *,
    job_fields: dict[str, Any] | None = None,
    original: Any = None,
    **settings: Any,
) -> Iterator[tuple[Any, Any]]:
    """A RepositoryRun for a job on acme/app with its sandbox created (no agent), and the
    sandbox; a follow-up's with `job_fields` (its session, ref, updates_pull_request_of) and
    the stored `original` job the worker reads. Closed (the run, the sandbox, the Git
    broker) when the block ends."""
    from claude_jobs.github.credentials import JobCredentials
    from claude_jobs.github.rest import GitHubRest
    from claude_jobs.settings import Settings
    from claude_jobs.worker.git_broker import GitBroker
    from claude_jobs.worker.isolation import AgentIdentity
    from claude_jobs.worker.repository import GitHubWorker, RepositoryRun
    from claude_jobs.worker.sandbox import Sandbox

    class Stored:
        def get(self, tenant_id: str) -> StoredCredential | None:
            if app_key is not None:
                return StoredCredential(installation_id=77)
            return StoredCredential(token=TENANT_TOKEN)

        def put(self, tenant_id: str, credential: StoredCredential) -> None: ...

    config = Settings(GITHUB_GIT_URL=githost.url, GITHUB_API_URL=githost.api_url, **settings)
    rest = GitHubRest(githost.api_url)
    from claude_jobs.github.credentials import AppJwt

    app_jwt = AppJwt("4242", lambda: app_key or "") if app_key is not None else None
    github = GitHubWorker(JobCredentials(Stored(), rest, app_jwt), rest, GitBroker(githost.url))
    job = _repository_job(
        githost,
        **{
            "job_id": "j-redelivered",
            "status": JobStatus.RUNNING,
            "prompt": "Change the greeting",
            **(job_fields or {}),
        },
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(job.job_id, AgentIdentity(), tmp_path).create()
    run = RepositoryRun(github, config, job, original)
    try:
        yield run, sandbox
    finally:
        run.close()
        sandbox.remove()
        github.broker.close()


def test_a_redelivered_job_opens_no_second_pull_request(githost: GitHost, tmp_path: Any) -> None:
    from claude_jobs.worker.ports import AgentOutcome

    # Given a job whose worker pushed and opened its pull request, then was redelivered
    outcomes = []
    for attempt in range(2):
        with _repository_run(githost, tmp_path / str(attempt)) as (run, sandbox):
            assert run.prepare(sandbox, restored=False) is None
            (sandbox.work_dir / "hello.py").write_text(f'print("attempt {attempt}")\n')
            outcomes.append(run.deliver(sandbox, AgentOutcome("succeeded", text="done")))
    # Then one pull request exists, both attempts name it, and it carries the last push
    assert len(githost.pulls) == 1
    first, second = (o.pull_request for o in outcomes)
    assert first is not None and second is not None and first.number == second.number
    branch = "claude-jobs/j-redelivered"
    assert githost.read_file("acme/app", branch, "hello.py") == 'print("attempt 1")\n'


def test_a_repository_over_the_cap_ends_repository_too_large(
    githost: GitHost, tmp_path: Any
) -> None:
    with _repository_run(githost, tmp_path, REPOSITORY_MAX_BYTES=1024) as (run, sandbox):
        failed = run.prepare(sandbox, restored=False)
    assert failed is not None and failed.error is not None
    assert failed.error.code == "repository_too_large"


def test_a_later_segment_goes_on_in_the_restored_clone_and_its_pr_carries_both_segments(
    githost: GitHost, tmp_path: Any
) -> None:
    import io

    from claude_jobs.worker.ports import AgentOutcome
    from claude_jobs.worker.workspace import limits, pack, unpack

    # Given a first segment that cloned and changed a file, its workspace carried (packed)
    carried = io.BytesIO()
    with _repository_run(githost, tmp_path / "first") as (run, sandbox):
        assert run.prepare(sandbox, restored=False) is None
        (sandbox.work_dir / "one.txt").write_text("first segment\n")
        pack(sandbox.work_dir, limits(1000, 10 * 1024 * 1024), carried)
    # When the next segment restores it and prepares the repository again
    with _repository_run(githost, tmp_path / "second") as (run, sandbox):
        carried.seek(0)
        unpack(carried, sandbox.work_dir, sandbox.give)
        assert run.prepare(sandbox, restored=True) is None
        (sandbox.work_dir / "two.txt").write_text("second segment\n")
        outcome = run.deliver(sandbox, AgentOutcome("succeeded", text="done"))
    # Then the working directory was not cloned over, and the PR holds both segments' files
    assert outcome.pull_request is not None
    branch = outcome.pull_request.branch
    assert githost.read_file("acme/app", branch, "one.txt") == "first segment\n"
    assert githost.read_file("acme/app", branch, "two.txt") == "second segment\n"
    assert githost.read_file("acme/app", branch, "README.md").startswith("# hello")


def test_an_app_installation_token_is_minted_for_the_job_and_revoked_when_it_ends(
    tmp_path: Any,
) -> None:
    from claude_jobs.worker.ports import AgentOutcome
    from claude_jobs_tools.githost import HostedApp
    from claude_jobs_tools.githost.local import rsa_key_pair

    private, public = rsa_key_pair()
    app = HostedApp("4242", public, installations={77: {"acme/app", "acme/other"}})
    with GitHost(app=app) as host:
        host.create_repository("acme/app")
        # Given a tenant connected through the App: its job's run mints a token
        with _repository_run(host, tmp_path, app_key=private) as (run, sandbox):
            assert run.prepare(sandbox, restored=False) is None
            (sandbox.work_dir / "new.txt").write_text("x\n")
            outcome = run.deliver(sandbox, AgentOutcome("succeeded", text="done"))
            token = run.credential.token
            assert outcome.pull_request is not None and token not in host.revoked
        # Then, the job ended, its token is revoked
        assert host.revoked == [token]


# ---------------------------------------------------------------- a follow-up updates the PR

#: The follow-up's agent: commits, then pushes the earlier job's branch itself (a
#: fast-forward; its tip rewritten, forced; a delete), its own branch and main: all refused.
FOLLOW_UP_PUSHES = (
    "echo two > two.txt && git add two.txt && git commit -qm two; "
    "git push origin HEAD:refs/heads/{branch} 2>&1 | grep rejected; "
    "git reset -q --soft HEAD~1 && git commit -q --amend -m rewritten; "
    "git push -f origin HEAD:refs/heads/{branch} 2>&1 | grep rejected; "
    "git push origin :refs/heads/{branch} 2>&1 | grep rejected; "
    "git push origin HEAD:refs/heads/claude-jobs/{job} 2>&1 | grep rejected; "
    "git push -f origin HEAD:main 2>&1 | grep rejected; "
    "echo pushes-done"
)


def test_a_follow_up_pushes_onto_the_earlier_jobs_branch_and_updates_its_pull_request(
    repo_stack: WorkerStack, githost: GitHost
) -> None:
    from claude_jobs.models import JobRequest

    # Given a job that opened a pull request (the real CLI)
    first = _job(repo_stack, githost)
    repo_stack.fake.script(
        ToolUse("Bash", {"command": "echo one > one.txt"}), Text("Added one.txt.")
    )
    repo_stack.deliver(first)
    first = repo_stack.get(first)
    assert first.pull_request is not None, first.error
    branch = f"claude-jobs/{first.job_id}"
    tip = githost.branch_sha("acme/app", branch)
    # And a follow-up the service lets update it: same tenant, its session, on its branch
    follow = repo_stack.container.job_service.submit(
        "acme",
        JobRequest(
            prompt="Also add two.txt",
            allowed_tools=["Bash"],
            session_id=first.session_id,
            repository={"url": f"{githost.url}/acme/app", "ref": branch},
            pull_request={"base": branch},
        ),
        updates_pull_request_of=first.job_id,
    ).job
    assert follow.updates_pull_request_of == first.job_id
    # whose agent pushes the branch itself, forces it, deletes it, pushes its own and main
    command = FOLLOW_UP_PUSHES.format(branch=branch, job=follow.job_id)
    repo_stack.fake.script(ToolUse("Bash", {"command": command}), Text("Added two.txt."))

    # When the worker runs it
    repo_stack.deliver(follow)
    done = repo_stack.get(follow)

    # Then every push of its agent was refused, and nothing but the worker's reached the host
    output = str(repo_stack.fake.message_requests[-1].tool_results()[0]["content"])
    assert "pushes-done" in output, output
    assert output.count("[remote rejected]") == 5, output
    assert "this job may not push" in output
    assert githost.branch_sha("acme/app", f"claude-jobs/{follow.job_id}") is None
    # And the job shows the same pull request, its branch fast-forwarded by one commit
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.pull_request is not None
    assert done.pull_request.number == first.pull_request.number
    assert done.pull_request.url == first.pull_request.url
    assert done.pull_request.branch == branch
    head = githost.branch_sha("acme/app", branch)
    assert head == done.pull_request.head_sha != tip
    assert _parent(githost, head) == tip
    assert githost.read_file("acme/app", branch, "one.txt") == "one\n"
    assert githost.read_file("acme/app", branch, "two.txt") == "two\n"
    assert len(githost.pulls) == 1
    assert {p["ref"] for p in githost.pushes} == {f"refs/heads/{branch}"}
    # And the tip it started from is kept for a later segment
    assert done.pull_request_base_sha == tip


def _parent(githost: GitHost, sha: str | None) -> str:
    import subprocess

    bare = githost.root / "acme/app.git"
    return subprocess.run(
        ["git", "-C", str(bare), "rev-parse", f"{sha}^"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _move(githost: GitHost, branch: str) -> str:
    """Someone else's commit on `branch` (straight in the host's repository)."""
    import subprocess

    bare = str(githost.root / "acme/app.git")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", bare, *args],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x",
                 "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x", "HOME": "/nonexistent"},
        ).stdout.strip()  # fmt: skip

    tip = git("rev-parse", f"refs/heads/{branch}")
    moved = git("commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", "someone else")
    git("update-ref", f"refs/heads/{branch}", moved)
    return moved


def _deliver_one_change(run: Any, sandbox: Any) -> Any:
    """Prepare the run, leave one new file in its working tree as an agent would, deliver a
    succeeded outcome. The outcome."""
    from claude_jobs.worker.ports import AgentOutcome

    assert run.prepare(sandbox, restored=False) is None
    (sandbox.work_dir / "two.txt").write_text("two\n")
    return run.deliver(sandbox, AgentOutcome("succeeded", text="done"))


def _repository_job(githost: GitHost, **fields: Any) -> Any:
    """A job of tenant acme on acme/app asking for a pull request, with `fields` over it."""
    from claude_jobs.models import Job, JobOptions

    return Job(
        job_id="j-1",
        tenant_id="acme",
        status=JobStatus.QUEUED,
        created_at=datetime.now(UTC),
        options=JobOptions(repository={"url": f"{githost.url}/acme/app"}, pull_request={}),
    ).model_copy(update=fields)


def _earlier(githost: GitHost, **fields: Any) -> Any:
    """The stored earlier job whose pull request (#1, open) a follow-up updates."""
    earlier = {"job_id": "j-original", "status": JobStatus.SUCCEEDED, "session_id": "s-1"}
    return _repository_job(githost, **{**earlier, **fields})


def _follow_up_fields(githost: GitHost, **fields: Any) -> dict[str, Any]:
    from claude_jobs.models import JobOptions

    branch = "claude-jobs/j-original"
    return {
        "session_id": "s-1",
        "updates_pull_request_of": "j-original",
        "options": JobOptions(
            repository={"url": f"{githost.url}/acme/app", "ref": branch},
            pull_request={"base": branch},
        ),
        **fields,
    }


def _open_pull(githost: GitHost, branch: str, state: str = "open") -> None:
    sha = githost.branch_sha("acme/app", branch)
    githost.pulls.append(
        {
            "number": 1,
            "html_url": f"{githost.url}/acme/app/pull/1",
            "repository": "acme/app",
            "state": state,
            "head": {"ref": branch, "sha": sha},
            "base": {"ref": "main"},
        }
    )


def _seed_branch(githost: GitHost, branch: str) -> str:
    import subprocess

    bare = str(githost.root / "acme/app.git")
    main = githost.branch_sha("acme/app", "main")
    subprocess.run(["git", "-C", bare, "update-ref", f"refs/heads/{branch}", str(main)], check=True)
    return _move(githost, branch)


def _earlier_branch(githost: GitHost, state: str = "open") -> tuple[str, str]:
    """An earlier job's branch, one commit past main, and its pull request: (branch, tip)."""
    branch = "claude-jobs/j-original"
    tip = _seed_branch(githost, branch)
    _open_pull(githost, branch, state=state)
    return branch, tip


def test_a_follow_up_whose_branch_moved_meanwhile_pushes_nothing_and_fails_clearly(
    githost: GitHost, tmp_path: Any
) -> None:
    from claude_jobs.worker.ports import AgentOutcome

    # Given an earlier job's branch with its open pull request, and a follow-up that fetched it
    branch, _ = _earlier_branch(githost)
    with _repository_run(
        githost, tmp_path, job_fields=_follow_up_fields(githost), original=_earlier(githost)
    ) as (run, sandbox):
        assert run.prepare(sandbox, restored=False) is None
        (sandbox.work_dir / "two.txt").write_text("two\n")
        # When someone else pushes onto the branch before the follow-up delivers
        moved = _move(githost, branch)
        outcome = run.deliver(sandbox, AgentOutcome("succeeded", text="the answer"))
    # Then nothing was pushed (the branch is as they left it), and the job fails clearly,
    # its answer kept
    assert githost.branch_sha("acme/app", branch) == moved
    assert outcome.ending == "failed" and outcome.error is not None
    assert outcome.error.code == "pull_request_failed"
    assert "moved since this job fetched it" in outcome.error.message
    assert f"now at {moved[:12]}" in outcome.error.message
    assert outcome.text == "the answer" and outcome.pull_request is None
    assert githost.pushes == []


def test_a_follow_up_push_the_host_refuses_says_so_not_that_the_branch_moved(
    githost: GitHost, tmp_path: Any
) -> None:
    # Given an earlier job's branch with its open pull request, which the host protects (its
    # own rule refuses every push to it, as a protected branch's would)
    branch, tip = _earlier_branch(githost)
    hook = githost.root / "acme/app.git" / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'GH006: Protected branch update failed' >&2\nexit 1\n")
    hook.chmod(0o755)
    # When a follow-up delivers its change, the branch where it fetched it
    with _repository_run(
        githost, tmp_path, job_fields=_follow_up_fields(githost), original=_earlier(githost)
    ) as (run, sandbox):
        outcome = _deliver_one_change(run, sandbox)
    # Then the job fails with the host's reason, and does not claim the branch moved
    assert githost.branch_sha("acme/app", branch) == tip
    assert outcome.ending == "failed" and outcome.error is not None
    assert outcome.error.code == "pull_request_failed"
    assert "moved" not in outcome.error.message
    assert "refused" in outcome.error.message
    assert "GH006: Protected branch update failed" in outcome.error.message
    assert outcome.text == "done" and outcome.pull_request is None


@pytest.mark.parametrize(
    ("earlier", "follow_up"),
    [
        ({"tenant_id": "globex"}, {}),  # another tenant's job
        ({"session_id": "s-other"}, {}),  # another session
        ({"options": "acme/other"}, {}),  # another repository
        ({}, {"session_id": None}),  # a follow-up without the session
        (None, {}),  # no such job
    ],
)
def test_a_follow_up_the_stored_job_does_not_vouch_for_opens_its_own_pull_request(
    githost: GitHost, tmp_path: Any, earlier: dict[str, Any] | None, follow_up: dict[str, Any]
) -> None:
    from claude_jobs.models import JobOptions

    # Given an earlier job's branch and pull request, and a follow-up naming it whose stored
    # earlier job is not its tenant's, session's or repository's
    branch, tip = _earlier_branch(githost)
    original = None
    if earlier is not None:
        if earlier.get("options") == "acme/other":
            earlier["options"] = JobOptions(repository={"url": f"{githost.url}/acme/other"})
        original = _earlier(githost, **earlier)
    with _repository_run(
        githost, tmp_path, job_fields=_follow_up_fields(githost, **follow_up), original=original
    ) as (run, sandbox):
        outcome = _deliver_one_change(run, sandbox)
    assert run.updates is None
    # Then the earlier job's branch is untouched; the follow-up has a pull request of its own
    assert githost.branch_sha("acme/app", branch) == tip
    assert outcome.pull_request is not None
    assert outcome.pull_request.branch == "claude-jobs/j-redelivered"


def test_a_follow_up_whose_pull_request_was_closed_pushes_nothing(
    githost: GitHost, tmp_path: Any
) -> None:

    branch, tip = _earlier_branch(githost, state="closed")
    with _repository_run(
        githost, tmp_path, job_fields=_follow_up_fields(githost), original=_earlier(githost)
    ) as (run, sandbox):
        outcome = _deliver_one_change(run, sandbox)
    assert githost.branch_sha("acme/app", branch) == tip
    assert outcome.error is not None and outcome.error.code == "pull_request_failed"
    assert "no open pull request" in outcome.error.message


def test_a_later_segment_of_a_follow_up_starts_from_the_tip_its_first_fetched(
    githost: GitHost, tmp_path: Any
) -> None:
    from claude_jobs.worker.ports import AgentOutcome

    # Given a follow-up whose first segment fetched the branch at `tip` (kept on the job)
    branch, tip = _earlier_branch(githost)
    fields = _follow_up_fields(githost, pull_request_base_sha=tip)
    # When someone else pushes onto the branch before its next segment prepares and delivers
    moved = _move(githost, branch)
    with _repository_run(githost, tmp_path, job_fields=fields, original=_earlier(githost)) as (
        run,
        sandbox,
    ):
        assert run.prepare(sandbox, restored=False) is None
        assert run.base_sha == tip
        (sandbox.work_dir / "two.txt").write_text("two\n")
        outcome = run.deliver(sandbox, AgentOutcome("succeeded", text="the answer"))
    # Then nothing was pushed over their commit, and the job fails clearly
    assert githost.branch_sha("acme/app", branch) == moved
    assert outcome.error is not None and outcome.error.code == "pull_request_failed"
    assert "moved since this job fetched it" in outcome.error.message

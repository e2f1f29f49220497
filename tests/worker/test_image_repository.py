"""Repositories in the image layout (tests/worker/test_image.py): one worker process as the
runtime user (worker and agent one non-root user, warm start on, the code directory read-only,
only the built artifact on the path) clones the job's repository from the Git host stand-in,
its agent hunts for the tenant's credential and pushes where it may not, and the worker's pull
request carries the change."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from claude_jobs.github.credentials import SecretsManagerCredentials, StoredCredential
from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.wiring import Container
from claude_jobs_tools.githost import GitHost
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.worker.conftest import REAL_KEY, sqs_event
from tests.worker.image_layout import (
    required_runtime_python,
    run_warm,
    worker_env,
)
from tests.worker.test_repository import (
    FOLLOW_UP_PUSHES,
    HUNT,
    TENANT_TOKEN,
    _open_pull,
    _parent,
    _seed_branch,
)

pytestmark = [pytest.mark.cli, pytest.mark.timeout(600)]


@dataclass
class RepoWorld:
    """A provisioned stack on the Git host stand-in and the fake Messages API, its tenant
    `acme` connected with a token, and the environment of the image's worker."""

    python: str
    fake: FakeAnthropic
    githost: GitHost
    container: Container
    env: dict[str, str]


@contextmanager
def repo_world(
    name: str, repositories: set[str], task_root: Path, image_site: Path, moto_server: str
) -> Iterator[RepoWorld]:
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    with FakeAnthropic(api_key=REAL_KEY) as fake, GitHost() as githost:
        for repository in sorted(repositories):
            githost.create_repository(repository)
        githost.add_token(TENANT_TOKEN, repositories)
        settings = provision(
            name,
            secret_value=REAL_KEY,
            anthropic_base_url=fake.url,
            github_git_url=githost.url,
            github_api_url=githost.api_url,
        ).settings
        SecretsManagerCredentials(
            boto3.client("secretsmanager"), settings.github_secret_prefix
        ).put("acme", StoredCredential(token=TENANT_TOKEN))
        env = worker_env(task_root, image_site, moto_server, settings, fake.url)
        env.update(
            {
                "GITHUB_GIT_URL": githost.url,
                "GITHUB_API_URL": githost.api_url,
                "GITHUB_SECRET_PREFIX": settings.github_secret_prefix,
                "WARM_START": "true",
            }
        )
        yield RepoWorld(python, fake, githost, Container(settings), env)


def test_in_the_image_a_repository_job_keeps_the_credential_from_its_agent(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    shared_dir: Path,
) -> None:
    # Given a repository on the Git host, its tenant connected with a token
    with repo_world(
        "imgrepo", {"acme/app", "acme/other"}, task_root, image_site, moto_server
    ) as world:
        fake, githost, container = world.fake, world.githost, world.container
        job = container.job_service.submit(
            "acme",
            JobRequest(
                prompt="Add a goodbye script",
                allowed_tools=["Bash"],
                repository={"url": f"{githost.url}/acme/app"},
                pull_request={},
            ),
        ).job
        # And an agent that hunts for the credential and pushes main and another repository,
        # then plants a filter in the worker's Git directory made before the run (one user:
        # it may write there) that would run a command when the worker commits
        pwned = shared_dir / "pwned"
        plant = (
            f"; printf '[filter \"evil\"]\\n\\tclean = touch {pwned}; cat\\n' "
            ">> $HOME/../git/config && echo planted; echo '* filter=evil' > .gitattributes"
        )
        fake.script(
            ToolUse("Bash", {"command": HUNT.format(git=githost.url, job=job.job_id) + plant}),
            Text("added"),
        )
        main_before = githost.branch_sha("acme/app", "main")
        # When the image's worker handles its message as the runtime user
        run = run_warm(world.python, task_root, world.env, [sqs_event(job)])
        assert run.returncode == 0, run.stderr[-3000:]
        answer = json.loads(run.stdout.split("ANSWER", 1)[1].splitlines()[0])
        assert answer == {"batchItemFailures": []}, run.stderr[-3000:]
        done = container.job_repository.get(job.job_id)
        assert done is not None
        # Then the agent found nothing of the credential, and its pushes were rejected
        output = str(fake.message_requests[1].tool_results()[0]["content"])
        assert "hunt-done" in output and "Initial commit" in output, output
        assert "FOUND" not in output and TENANT_TOKEN not in output, output
        assert output.count("[remote rejected]") == 3, output
        assert "may reach only acme/app" in output
        assert githost.branch_sha("acme/app", "main") == main_before
        # And the job's pull request carries the change on its branch
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.pull_request is not None
        branch = f"claude-jobs/{job.job_id}"
        assert githost.read_file("acme/app", branch, "goodbye.py") == 'print("goodbye")\n'
        assert {p["ref"] for p in githost.pushes} == {f"refs/heads/{branch}"}
        # And the planted filter never ran in the worker's commit
        assert "planted" in output
        assert not pwned.exists()


def test_in_the_image_a_follow_up_updates_the_earlier_pull_request_and_its_agent_pushes_nothing(
    task_root: Path,
    image_site: Path,
    moto_server: str,
) -> None:
    # Given an earlier job of the tenant (ended) whose branch has an open pull request
    with repo_world("imgfollow", {"acme/app"}, task_root, image_site, moto_server) as world:
        fake, githost, container = world.fake, world.githost, world.container
        jobs = container.job_service
        url = f"{githost.url}/acme/app"
        first = jobs.submit(
            "acme", JobRequest(prompt="first", repository={"url": url}, pull_request={})
        ).job
        jobs.cancel("acme", first.job_id)
        branch = f"claude-jobs/{first.job_id}"
        tip = _seed_branch(githost, branch)
        _open_pull(githost, branch)
        # And a follow-up the service lets update it, whose agent pushes the branch itself
        # (a fast-forward, a forced rewrite, a delete), its own branch and main
        follow = jobs.submit(
            "acme",
            JobRequest(
                prompt="Also add two.txt",
                allowed_tools=["Bash"],
                session_id=first.session_id,
                repository={"url": url, "ref": branch},
                pull_request={"base": branch},
            ),
            updates_pull_request_of=first.job_id,
        ).job
        assert follow.updates_pull_request_of == first.job_id
        command = FOLLOW_UP_PUSHES.format(branch=branch, job=follow.job_id)
        fake.script(ToolUse("Bash", {"command": command}), Text("Added two.txt."))
        # When the image's worker handles it as the runtime user
        run = run_warm(world.python, task_root, world.env, [sqs_event(follow)])
        assert run.returncode == 0, run.stderr[-3000:]
        done = container.job_repository.get(follow.job_id)
        assert done is not None
        # Then every push of its agent was refused
        output = str(fake.message_requests[1].tool_results()[0]["content"])
        assert "pushes-done" in output, output
        assert output.count("[remote rejected]") == 5, output
        assert githost.branch_sha("acme/app", f"claude-jobs/{follow.job_id}") is None
        # And the worker fast-forwarded the earlier branch: the same pull request, updated
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.pull_request is not None and done.pull_request.number == 1
        assert done.pull_request.branch == branch
        head = githost.branch_sha("acme/app", branch)
        assert head == done.pull_request.head_sha and _parent(githost, head) == tip
        assert githost.read_file("acme/app", branch, "two.txt") == "two\n"
        assert len(githost.pulls) == 1
        assert {p["ref"] for p in githost.pushes} == {f"refs/heads/{branch}"}


def test_in_the_image_a_github_event_job_mints_its_token_edits_and_opens_its_pull_request(
    task_root: Path, image_site: Path, moto_server: str
) -> None:
    """A job a signed GitHub comment started, through the real submit handler, run by the
    image's worker: the worker signs the App's JWT with the image's own libraries, mints an
    installation token for the job, and the agent edits with the GitHub jobs' tools only."""
    from claude_jobs_tools.githost import HostedApp
    from claude_jobs_tools.githost.local import rsa_key_pair
    from claude_jobs_tools.provision import provision
    from tests.events import load_event
    from tests.integration.api.conftest import TENANT, Api, with_body, with_headers

    python = required_runtime_python()
    private, public = rsa_key_pair()
    app = HostedApp("4242", public, installations={77: {"acme/app"}})
    with FakeAnthropic(api_key=REAL_KEY) as fake, GitHost(app=app) as githost:
        # Given a repository the App's installation reaches, a collaborator with write access,
        # and the tenant connected by that installation (the App's key and the webhook secret
        # in Secrets Manager)
        githost.create_repository("acme/app")
        githost.collaborators["acme/app"] = {"alice": "write"}
        settings = provision(
            "imggh",
            secret_value=REAL_KEY,
            anthropic_base_url=fake.url,
            github_git_url=githost.url,
            github_api_url=githost.api_url,
            github_app_id="4242",
            github_app_key_secret_id="claude-jobs/github-app-key",
            github_webhook_secret_id="claude-jobs/github-webhook",
        ).settings
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name="claude-jobs/github-app-key", SecretString=private)
        secrets.create_secret(Name="claude-jobs/github-webhook", SecretString="webhook-secret")
        SecretsManagerCredentials(secrets, settings.github_secret_prefix).put(
            TENANT, StoredCredential(installation_id=77)
        )
        container = Container(settings)
        # When alice's comment is delivered, signed, to the submit function
        body = json.dumps(
            {
                "action": "created",
                "issue": {"number": 7, "title": "Add contributors", "body": "Please."},
                "comment": {"id": 1, "body": "@claude-jobs please add a CONTRIBUTORS file",
                            "user": {"login": "alice", "type": "User"}},
                "repository": {"full_name": "acme/app"},
                "installation": {"id": 77},
                "sender": {"login": "alice", "type": "User"},
            }
        )  # fmt: skip
        signature = hmac.new(b"webhook-secret", body.encode(), hashlib.sha256).hexdigest()
        request = with_body(load_event("apigw_github_event.json"), body)
        with_headers(
            request,
            X_Hub_Signature_256=f"sha256={signature}",
            X_GitHub_Event="issue_comment",
            X_GitHub_Delivery="d-image",
        )
        api = Api(container)
        answer = api.call(api.submit, request)
        assert answer.status == 202, answer.text
        job = container.job_repository.get(answer.json["job_id"])
        assert job is not None and job.source == "github"
        # and the image's worker runs it as the runtime user, its agent writing the file
        fake.script(
            ToolUse("Write", {"file_path": "CONTRIBUTORS", "content": "alice\n"}),
            Text("Added CONTRIBUTORS."),
        )
        revoked_before = len(githost.revoked)
        env = worker_env(task_root, image_site, moto_server, settings, fake.url)
        env.update(
            {
                "GITHUB_GIT_URL": githost.url,
                "GITHUB_API_URL": githost.api_url,
                "GITHUB_SECRET_PREFIX": settings.github_secret_prefix,
                "GITHUB_APP_ID": "4242",
                "GITHUB_APP_KEY_SECRET_ID": "claude-jobs/github-app-key",
                "WARM_START": "true",
            }
        )
        run = run_warm(python, task_root, env, [sqs_event(job)])
        assert run.returncode == 0, run.stderr[-3000:]
        answer_line = json.loads(run.stdout.split("ANSWER", 1)[1].splitlines()[0])
        assert answer_line == {"batchItemFailures": []}, run.stderr[-3000:]
        done = container.job_repository.get(job.job_id)
        assert done is not None
        # Then the job succeeded with its pull request, carrying the agent's file on its branch
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.pull_request is not None
        branch = f"claude-jobs/{job.job_id}"
        assert githost.read_file("acme/app", branch, "CONTRIBUTORS") == "alice\n"
        assert {p["ref"] for p in githost.pushes} == {f"refs/heads/{branch}"}
        # with the tools GitHub jobs get (GITHUB_ALLOWED_TOOLS), no shell
        offered = set(fake.message_requests[0].tool_names)
        assert {"Edit", "Write"} <= offered and "Bash" not in offered, offered
        # and the installation token minted for the run was revoked when it ended, and never
        # reached the model
        minted = [t for t in githost.revoked[revoked_before:] if t.startswith("ghs_")]
        assert minted, githost.revoked
        sent = b"".join(r.raw for r in fake.message_requests).decode("utf-8", "replace")
        assert not any(token in sent for token in minted)

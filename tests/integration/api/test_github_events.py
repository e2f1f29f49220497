"""GitHub events (issue 24): `POST /v1/github/events` through the real submit handler, on moto,
against the local Git host stand-in (its REST subset: collaborator permission, issue comments,
installation tokens). A signed comment starts a job whose one comment is updated when it ends;
a bad signature, a replay, an actor without write access, a bot and an unknown installation
start nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from claude_jobs.adapters.job_items import job_to_item
from claude_jobs.github.comments import JobComments
from claude_jobs.github.credentials import SecretsManagerCredentials, StoredCredential
from claude_jobs.github.events import MARKER
from claude_jobs.github.rest import GitHubRest
from claude_jobs.github.wiring import github_credentials
from claude_jobs.models import JobResult, JobStatus
from claude_jobs.notify.processor import Notifier
from claude_jobs.wiring import Container
from claude_jobs_tools.dev_process import free_port
from claude_jobs_tools.githost import GitHost, HostedApp
from claude_jobs_tools.githost.local import rsa_key_pair
from claude_jobs_tools.provision import Provisioned
from tests.events import load_event
from tests.integration.api.conftest import (
    TENANT,
    Answer,
    Api,
    failing,
    with_body,
    with_headers,
)

PREFIX = "claude-jobs/github/"
WEBHOOK_SECRET = "webhook-secret-for-tests"
APP_KEY_SECRET = "claude-jobs/github-app-key"
INSTALLATION = 77


@dataclass
class World:
    api: Api
    host: GitHost
    container: Container

    def deliver(
        self,
        payload: dict[str, Any],
        *,
        event: str = "issue_comment",
        delivery: str = "d-1",
        secret: str = WEBHOOK_SECRET,
        raw: bytes | None = None,
    ) -> Answer:
        body = raw if raw is not None else json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        request = with_body(load_event("apigw_github_event.json"), body.decode())
        with_headers(
            request,
            X_Hub_Signature_256=signature,
            X_GitHub_Event=event,
            X_GitHub_Delivery=delivery,
        )
        return self.api.call(self.api.submit, request)

    def notifier(self) -> Notifier:
        settings = self.container.settings
        return Notifier(
            _NoEvents(),
            _NoDeliveries(),
            github_comments=lambda: JobComments(
                github_credentials(settings, boto3.client("secretsmanager")),
                GitHubRest(settings.github_api_url),
            ),
        )

    def jobs(self) -> list[str]:
        page = self.api.list_jobs().json
        return [j["job_id"] for j in page["items"]]


def comment_event(
    body: str = "@claude-jobs please add a CONTRIBUTORS file",
    *,
    sender: str = "alice",
    sender_type: str = "User",
    installation: int = INSTALLATION,
    pull_request: bool = False,
    number: int = 7,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"number": number, "title": "Add contributors", "body": "Please."}
    if pull_request:
        issue["pull_request"] = {"url": "…"}
    return {
        "action": "created",
        "issue": issue,
        "comment": {"id": 1, "body": body, "user": {"login": sender, "type": sender_type}},
        "repository": {"full_name": "acme/app"},
        "installation": {"id": installation},
        "sender": {"login": sender, "type": sender_type},
    }


@pytest.fixture
def world(provisioned: Provisioned) -> Iterator[World]:
    private, public = rsa_key_pair()
    app = HostedApp("4242", public, installations={INSTALLATION: {"acme/app"}})
    with GitHost(app=app) as host:
        host.create_repository("acme/app")
        host.collaborators["acme/app"] = {"alice": "write", "mallory": "read"}
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name="claude-jobs/github-webhook", SecretString=WEBHOOK_SECRET)
        secrets.create_secret(Name=APP_KEY_SECRET, SecretString=private)
        SecretsManagerCredentials(secrets, PREFIX).put(
            TENANT, StoredCredential(installation_id=INSTALLATION)
        )
        settings = provisioned.settings.model_copy(
            update={
                "github_git_url": host.url,
                "github_api_url": host.api_url,
                "github_secret_prefix": PREFIX,
                "github_app_id": "4242",
                "github_app_key_secret_id": APP_KEY_SECRET,
                "github_webhook_secret_id": "claude-jobs/github-webhook",
            }
        )
        container = Container(settings)
        yield World(Api(container), host, container)


def test_a_signed_comment_starts_a_job_whose_one_comment_is_updated_when_it_ends(
    world: World,
) -> None:
    # Given a comment mentioning the handle by a collaborator with write access
    # When GitHub delivers it, signed
    answer = world.deliver(comment_event())

    # Then a job is started for the installation's tenant, on the repository, with a PR
    assert answer.status == 202, answer.text
    job_id = answer.json["job_id"]
    job = world.api.get_job(job_id).json
    assert world.container.job_service.get(TENANT, job_id).source == "github"
    assert job["request"]["repository"]["url"] == f"{world.host.url}/acme/app"
    assert "pull_request" in job["request"]
    # with the tools to make the change asked for (GITHUB_ALLOWED_TOOLS)
    assert job["request"]["allowed_tools"] == ["Read", "Glob", "Grep", "Edit", "Write"]
    prompt = world.container.job_service.get(TENANT, job_id).prompt or ""
    assert prompt.startswith("Add contributors (#7)")
    assert "please add a CONTRIBUTORS file" in prompt
    # and one comment on the issue says it was accepted, naming the job
    (comment_id, comment), *others = world.host.comments.items()
    assert not others
    assert comment["number"] == 7 and job_id in comment["body"] and MARKER in comment["body"]
    assert job["metadata"]["github_comment_id"] == str(comment_id)
    # and the installation token minted for it was revoked
    assert world.host.revoked

    # When it runs, the comment says so
    stored = world.container.job_service.get(TENANT, job_id)
    running = stored.model_copy(update={"status": JobStatus.RUNNING})
    world.notifier().process(job_to_item(stored, 7), job_to_item(running, 7))
    assert "running" in world.host.comments[comment_id]["body"]

    # When the job ends and the notifier sees its completion record
    done = stored.model_copy(
        update={"status": JobStatus.SUCCEEDED, "result": JobResult(text="Added CONTRIBUTORS.")}
    )
    old, new = (job_to_item(j, 7) for j in (stored, done))
    world.notifier().process(old, new)

    # Then the same comment now carries the answer (no second comment)
    assert list(world.host.comments) == [comment_id]
    assert "Added CONTRIBUTORS." in world.host.comments[comment_id]["body"]
    assert "done" in world.host.comments[comment_id]["body"]


def test_a_comment_on_the_jobs_pull_request_continues_its_session_on_its_branch(
    world: World,
) -> None:
    # Given a job an issue comment started, ended, and the pull request it opened
    first = world.deliver(comment_event(), delivery="d-issue").json["job_id"]
    assert world.api.cancel_job(first).status == 202
    session = world.container.job_service.get(TENANT, first).session_id
    branch = f"claude-jobs/{first}"
    world.host.pulls.append(
        {"number": 12, "repository": "acme/app", "head": {"ref": branch}, "base": {"ref": "main"}}
    )

    # When a collaborator mentions the handle on that pull request
    answer = world.deliver(
        comment_event("@claude-jobs also sort it", pull_request=True, number=12),
        delivery="d-pull",
    )

    # Then a job continues the first one's session on the pull request's branch
    assert answer.status == 202, answer.text
    second = world.container.job_service.get(TENANT, answer.json["job_id"])
    assert session and second.session_id == session
    view = world.api.get_job(second.job_id).json["request"]
    assert view["repository"]["ref"] == branch
    assert view["pull_request"]["base"] == branch
    assert "Write" in view["allowed_tools"]
    assert [c["number"] for c in world.host.comments.values()] == [7, 12]


def test_a_job_submitted_through_the_api_with_github_metadata_edits_no_comment(
    world: World,
) -> None:
    # Given a comment of an earlier job, and a tenant's own job that names it in its metadata
    first = world.deliver(comment_event(), delivery="d-real").json["job_id"]
    (comment_id, comment), *_ = world.host.comments.items()
    before = dict(comment)
    spoof = world.api.submit_job(
        {
            "prompt": "hi",
            "metadata": {"github_repository": "acme/app", "github_comment_id": str(comment_id)},
        }
    )
    assert spoof.status == 202 and first != spoof.json["job_id"]

    # When that job ends
    stored = world.container.job_service.get(TENANT, spoof.json["job_id"])
    done = stored.model_copy(update={"status": JobStatus.FAILED})
    world.notifier().process(job_to_item(stored, 7), job_to_item(done, 7))

    # Then the comment is untouched: only jobs GitHub events started have one
    assert world.host.comments[comment_id] == before


def test_a_bad_signature_is_401_and_starts_nothing(world: World) -> None:
    answer = world.deliver(comment_event(), secret="not-the-secret")
    assert answer.status == 401
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert world.jobs() == [] and world.host.comments == {}


def test_a_signed_body_that_is_not_json_is_400(world: World) -> None:
    answer = world.deliver({}, raw=b"{not json")
    assert answer.status == 400
    assert world.jobs() == []


def test_a_replayed_delivery_starts_nothing_more(world: World) -> None:
    first = world.deliver(comment_event(), delivery="same-delivery")
    again = world.deliver(comment_event(), delivery="same-delivery")
    assert first.status == 202
    assert again.status == 200 and again.json["reason"] == "replayed_delivery"
    assert len(world.jobs()) == 1 and len(world.host.comments) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (comment_event(sender="mallory"), "no_write_access"),
        (comment_event(sender="stranger"), "no_write_access"),
        (comment_event(sender="ci-helper", sender_type="Bot"), "bot_sender"),
        (comment_event(sender="helper[bot]"), "bot_sender"),
        (comment_event(body=f"{MARKER}\n@claude-jobs: working on it."), "own_comment"),
        (comment_event(installation=99), "unknown_installation"),
        (comment_event(body="no handle here, @claude-jobsy"), "no_mention"),
    ],
)
def test_an_event_that_may_not_start_a_job_is_answered_2xx_and_starts_nothing(
    world: World, payload: dict[str, Any], reason: str
) -> None:
    answer = world.deliver(payload)
    assert answer.status == 200, answer.text
    assert answer.json == {"status": "ignored", "reason": reason}
    assert world.jobs() == [] and world.host.comments == {}


class _NoEvents:
    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        pass


class _NoDeliveries:
    def send(self, message: Any) -> None:
        pass


def label_event(label: str, *, sender: str = "alice") -> dict[str, Any]:
    return {
        "action": "labeled",
        "label": {"name": label},
        "issue": {"number": 9, "title": "Add a licence", "body": "MIT, please."},
        "repository": {"full_name": "acme/app"},
        "installation": {"id": INSTALLATION},
        "sender": {"login": sender, "type": "User"},
    }


def test_an_issue_labeled_with_the_configured_label_starts_a_job_and_others_do_not(
    world: World,
) -> None:
    # Given a deployment whose label is `claude-jobs`
    settings = world.container.settings.model_copy(update={"github_label": "claude-jobs"})
    container = Container(settings)
    labeled = World(Api(container), world.host, container)
    # When an issue gets another label, or the label from someone without write access
    other = labeled.deliver(label_event("bug"), event="issues", delivery="l-1")
    reader = labeled.deliver(
        label_event("claude-jobs", sender="mallory"), event="issues", delivery="l-2"
    )
    # Then nothing starts
    assert other.status == 200 and other.json["reason"] == "other_label"
    assert reader.status == 200 and reader.json["reason"] == "no_write_access"
    assert labeled.jobs() == []
    # When a collaborator with write access labels it
    answer = labeled.deliver(label_event("claude-jobs"), event="issues", delivery="l-3")
    # Then a job on the repository starts from the issue, with a pull request, and one comment
    assert answer.status == 202, answer.text
    job = labeled.api.get_job(answer.json["job_id"]).json
    assert job["request"]["repository"]["url"] == f"{world.host.url}/acme/app"
    assert "pull_request" in job["request"]
    assert [c["number"] for c in world.host.comments.values()] == [9]


def test_a_webhook_secret_that_cannot_be_read_is_503_with_retry_after_and_a_redelivery_works(
    world: World,
) -> None:
    # Given Secrets Manager failing (nothing of the webhook secret cached yet)
    # When GitHub delivers a signed comment
    with failing(world.container.client("secretsmanager"), "get_secret_value"):
        answer = world.deliver(comment_event(), delivery="d-outage")

    # Then it is a 503 problem with Retry-After, and nothing was done
    answer.is_unavailable()
    assert WEBHOOK_SECRET not in (answer.text or "")
    assert world.jobs() == [] and world.host.comments == {}

    # When Secrets Manager is back and GitHub redelivers the same delivery
    again = world.deliver(comment_event(), delivery="d-outage")

    # Then the job starts (the delivery was not claimed by the failed attempt)
    assert again.status == 202, again.text
    assert len(world.jobs()) == 1


def test_an_installation_lookup_that_cannot_be_read_is_503_and_claims_nothing(
    world: World,
) -> None:
    # Given the webhook secret readable, then Secrets Manager failing for the tenant lookup
    assert world.container.job_service  # (its page token secret read before the outage)
    secrets = world.container.client("secretsmanager")
    stubbed = Stubber(secrets)
    stubbed.add_response(
        "get_secret_value",
        {"Name": "claude-jobs/github-webhook", "SecretString": WEBHOOK_SECRET},
    )
    stubbed.add_client_error(
        "get_secret_value", service_error_code="InternalServiceError", http_status_code=500
    )
    # When GitHub delivers a signed comment
    with stubbed:
        answer = world.deliver(comment_event(), delivery="d-lookup")

    # Then 503 with Retry-After, nothing started, and a redelivery starts the job
    answer.is_unavailable()
    assert world.jobs() == [] and world.host.comments == {}
    assert world.deliver(comment_event(), delivery="d-lookup").status == 202


def test_a_delivery_that_cannot_be_claimed_is_503_and_a_redelivery_starts_the_job(
    world: World,
) -> None:
    # Given DynamoDB failing when the delivery is to be claimed (its first write)
    # When GitHub delivers a signed comment
    with failing(world.container.client("dynamodb"), "put_item", "InternalServerError"):
        answer = world.deliver(comment_event(), delivery="d-claim")
    # Then 503 with Retry-After (not 500), nothing started, no comment
    answer.is_unavailable()
    assert world.jobs() == [] and world.host.comments == {}
    # And GitHub's redelivery starts the job
    assert world.deliver(comment_event(), delivery="d-claim").status == 202


def test_a_claim_that_cannot_be_given_back_is_kept_and_the_answer_stays_2xx(
    world: World,
) -> None:
    # Given GitHub unreachable, and DynamoDB failing when the claim is to be given back
    settings = world.container.settings.model_copy(
        update={"github_api_url": f"http://127.0.0.1:{free_port()}"}
    )
    container = Container(settings)
    api = Api(container)
    stubbed = Stubber(container.client("dynamodb"))
    stubbed.add_response("put_item", {})
    stubbed.add_client_error(
        "delete_item", service_error_code="InternalServerError", http_status_code=500
    )
    # When GitHub delivers a signed comment
    with stubbed:
        answer = World(api, world.host, container).deliver(comment_event(), delivery="d-kept")
    # Then it is answered as not acted on (not 500), the stubbed calls all made
    assert answer.status == 200 and answer.json["reason"] == "github_unavailable", answer.text
    stubbed.assert_no_pending_responses()
    assert world.jobs() == []


def _worker_delivers(world: World, job_id: str, tmp_path: Any, files: dict[str, str]) -> Any:
    """The worker's repository steps for a stored job (no agent: `files` are what it left):
    clone, then commit, push and the pull request, with the stored original job it updates
    read from the table as the worker does."""
    from claude_jobs.worker.git_broker import GitBroker
    from claude_jobs.worker.isolation import AgentIdentity
    from claude_jobs.worker.ports import AgentOutcome
    from claude_jobs.worker.repository import GitHubWorker, RepositoryRun
    from claude_jobs.worker.sandbox import Sandbox

    settings = world.container.settings
    rest = GitHubRest(settings.github_api_url)
    github = GitHubWorker(
        github_credentials(settings, boto3.client("secretsmanager"), rest),
        rest,
        GitBroker(settings.github_git_url),
    )
    repo = world.container.job_repository
    job = repo.get(job_id)
    assert job is not None
    original = repo.get(job.updates_pull_request_of) if job.updates_pull_request_of else None
    (tmp_path / job_id).mkdir()
    sandbox = Sandbox(job_id, AgentIdentity(), tmp_path / job_id).create()
    run = RepositoryRun(github, settings, job, original)
    try:
        assert run.prepare(sandbox, restored=False) is None
        for name, text in files.items():
            (sandbox.work_dir / name).write_text(text)
        return run.deliver(sandbox, AgentOutcome("succeeded", text="done"))
    finally:
        run.close()
        sandbox.remove()
        github.broker.close()


def test_a_comment_on_the_jobs_pull_request_updates_that_pull_request(
    world: World, tmp_path: Any
) -> None:
    # Given a job an issue comment started, whose worker opened its pull request, and ended
    first = world.deliver(comment_event(), delivery="d-issue").json["job_id"]
    opened = _worker_delivers(world, first, tmp_path, {"CONTRIBUTORS": "alice\n"})
    assert opened.pull_request is not None
    assert world.api.cancel_job(first).status == 202  # (its session idle again)
    branch = f"claude-jobs/{first}"
    tip = world.host.branch_sha("acme/app", branch)

    # When a collaborator mentions the handle on that pull request
    answer = world.deliver(
        comment_event(
            "@claude-jobs also sort it", pull_request=True, number=opened.pull_request.number
        ),
        delivery="d-pull",
    )

    # Then the follow-up continues the session and is set to update the first job's PR
    assert answer.status == 202, answer.text
    second = world.container.job_service.get(TENANT, answer.json["job_id"])
    assert second.updates_pull_request_of == first
    # And when its worker delivers, the same pull request is updated: its branch
    # fast-forwarded, no second pull request
    updated = _worker_delivers(world, second.job_id, tmp_path, {"CONTRIBUTORS": "alice\nbob\n"})
    assert updated.pull_request is not None, updated.error
    assert updated.pull_request.number == opened.pull_request.number
    assert updated.pull_request.url == opened.pull_request.url
    assert updated.pull_request.branch == branch
    assert len(world.host.pulls) == 1
    assert world.host.read_file("acme/app", branch, "CONTRIBUTORS") == "alice\nbob\n"
    assert world.host.branch_sha("acme/app", branch) == updated.pull_request.head_sha != tip


def test_only_the_service_decides_that_a_job_updates_a_pull_request(world: World) -> None:
    # Given a job of the tenant on acme/app, ended
    first = world.deliver(comment_event(), delivery="d-issue").json["job_id"]
    assert world.api.cancel_job(first).status == 202
    session = world.container.job_service.get(TENANT, first).session_id
    repository = {"url": f"{world.host.url}/acme/app", "ref": f"claude-jobs/{first}"}

    # When a caller asks for it in a job's body
    forged = world.api.submit_job(
        {"prompt": "x", "repository": repository, "session_id": session,
         "updates_pull_request_of": first}
    )  # fmt: skip
    # Then it is no field of a request (422)
    assert forged.is_problem(422)

    # When the service is asked for it with another session (of the tenant), none, or
    # another repository
    jobs = world.container.job_service
    elsewhere = world.api.submit_job({"prompt": "another conversation"}).json["job_id"]
    assert world.api.cancel_job(elsewhere).status == 202
    another = jobs.get(TENANT, elsewhere).session_id
    other_session = jobs.submit(
        TENANT,
        jobs.parse_request({"prompt": "x", "repository": repository, "session_id": another}),
        updates_pull_request_of=first,
    ).job
    assert world.api.cancel_job(other_session.job_id).status == 202
    no_session = jobs.submit(
        TENANT,
        jobs.parse_request({"prompt": "x", "repository": repository}),
        updates_pull_request_of=first,
    ).job
    other_repository = jobs.submit(
        TENANT,
        jobs.parse_request(
            {
                "prompt": "x",
                "session_id": session,
                "repository": {"url": f"{world.host.url}/acme/other"},
            }
        ),
        updates_pull_request_of=first,
    ).job
    assert world.api.cancel_job(other_repository.job_id).status == 202
    # or for another tenant's job
    other_tenant = jobs.submit(
        "globex",
        jobs.parse_request({"prompt": "x", "repository": repository}),
        updates_pull_request_of=first,
    ).job
    # Then none of them updates it
    assert other_session.updates_pull_request_of is None
    assert no_session.updates_pull_request_of is None
    assert other_repository.updates_pull_request_of is None
    assert other_tenant.updates_pull_request_of is None

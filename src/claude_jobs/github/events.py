"""GitHub events (issue 24): `POST /v1/github/events`, the deployment's GitHub App's webhook.

A delivery is trusted only when its `X-Hub-Signature-256` is the HMAC-SHA256 of the raw body
with the App's webhook secret (compared in constant time). It starts a job when

- a comment is created (`issue_comment`, `created`) that mentions the deployment's handle
  (`GITHUB_HANDLE`), or an issue is labeled with `GITHUB_LABEL`;
- the sender is no bot (`sender.type == "Bot"`, a comment made through an App, or one carrying
  our own marker: a job's own comments never start another one);
- the installation belongs to a tenant (`claude-jobs github connect --installation-id`);
- the delivery was not seen before (`X-GitHub-Delivery`, claimed once in the jobs table);
- the sender has write access to the repository (`admin`, `maintain` or `write`).

The job works on the repository with the tools `GITHUB_ALLOWED_TOOLS` names (default Read,
Glob, Grep, Edit, Write); on an issue it opens a pull request; on a pull request the
worker opened (`claude-jobs/<job_id>`) it continues that job's session, on the PR's branch. Its
progress and answer are ONE comment, posted when the job is accepted and updated when it ends
(:mod:`.comments`, from the notifier). Anything else is answered 2xx with the reason it was
ignored (GitHub must not retry it), and logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ..adapters.dynamo import serialize, to_item
from ..errors import ClaudeJobsError, RequestValidationError, ServiceUnavailableError
from ..observability import get_logger
from ..triggers.templates import Template
from .credentials import CredentialUnavailableError, InstallationTenants, JobCredentials
from .rest import GitHubError, GitHubRest

if TYPE_CHECKING:
    from ..job_service import JobService

#: What our own comments carry: a comment with it never starts a job.
MARKER = "<!-- claude-jobs -->"
#: Roles that may start a job.
WRITE_ROLES = frozenset({"admin", "maintain", "write"})
#: What the token of the events' REST calls may do (an App installation's is minted with it).
COMMENT_PERMISSIONS = {
    "issues": "write",
    "pull_requests": "write",
    "contents": "read",
    "metadata": "read",
}
#: A delivery id is remembered this long (GitHub's redeliveries are within days).
DELIVERY_TTL_SECONDS = 7 * 24 * 3600
#: Of an issue's or comment's text, at most this much goes into the prompt.
MAX_QUOTED_CHARS = 20_000
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_FULL_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}/[A-Za-z0-9._-]{1,100}$")
_OWN_BRANCH = re.compile(r"^claude-jobs/(?P<job_id>[A-Za-z0-9][A-Za-z0-9_-]{0,127})$")

PROMPT = Template(
    "github",
    1,
    "{{title}} (#{{number}})\n\n"
    "On GitHub, {{actor}} asked for this in a comment on {{kind}} #{{number}} of "
    "{{repository}}:\n\n{{request}}\n\n"
    "The {{kind}}'s description:\n\n{{body}}\n\n"
    "You work in a clone of {{repository}}. Make the change asked for (what you change is "
    "proposed as a pull request), and end with a short answer for the {{kind}}'s thread.\n",
)


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256: sha256=<hex>` is the HMAC-SHA256 of `body` with `secret`."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


@dataclass(frozen=True)
class EventOutcome:
    status: Literal["started", "ignored"]
    reason: str
    job_id: str | None = None

    def body(self) -> dict[str, str]:
        found = {"status": self.status, "reason": self.reason}
        if self.job_id:
            found["job_id"] = self.job_id
        return found


class DeliveryClaims(Protocol):
    def claim(self, delivery_id: str) -> bool:
        """Take `delivery_id`: False when it was taken before (a replay)."""

    def release(self, delivery_id: str) -> None: ...


class DynamoDeliveryClaims:
    """One item per delivery in the jobs table (`job_id = github-delivery#<id>`), put only if
    absent or expired; TTL deletes it."""

    def __init__(self, client: Any, table: str, clock: Any = time.time) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    def _id(self, delivery_id: str) -> str:
        return f"github-delivery#{delivery_id}"

    def claim(self, delivery_id: str) -> bool:
        now = int(self._clock())
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_item(
                    {"job_id": self._id(delivery_id), "expires_at": now + DELIVERY_TTL_SECONDS}
                ),
                ConditionExpression="attribute_not_exists(job_id) OR expires_at < :now",
                ExpressionAttributeValues={":now": serialize(now)},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, delivery_id: str) -> None:
        self._client.delete_item(
            TableName=self._table, Key={"job_id": {"S": self._id(delivery_id)}}
        )


@dataclass(frozen=True)
class _Ask:
    """What a delivery asks for, once it is one that may start a job."""

    installation_id: int
    repository: str  # owner/name
    number: int
    is_pull_request: bool
    title: str
    body: str
    request: str
    actor: str


class GitHubEvents:
    def __init__(
        self,
        *,
        jobs: JobService,
        tenants: InstallationTenants,
        credentials: JobCredentials,
        rest: GitHubRest,
        claims: DeliveryClaims,
        git_url: str,
        handle: str,
        label: str = "",
        allowed_tools: tuple[str, ...] = ("Read", "Glob", "Grep", "Edit", "Write"),
    ) -> None:
        self._jobs = jobs
        self._tenants = tenants
        self._credentials = credentials
        self._rest = rest
        self._claims = claims
        self._git_url = git_url.rstrip("/")
        self._handle = handle.strip()
        self._label = label.strip()
        self._tools = list(allowed_tools)
        self._mention = re.compile(rf"(?<![\w@-]){re.escape(self._handle)}(?![\w-])", re.IGNORECASE)

    def handle(self, event_name: str, delivery_id: str, payload: Any) -> EventOutcome:
        """Act on one verified delivery; never raises for what GitHub sent."""
        log = get_logger()
        ask = self._ask(event_name, payload)
        if isinstance(ask, str):
            log.info("github event ignored: %s", ask, extra={"delivery": delivery_id})
            return EventOutcome("ignored", ask)
        context = {"delivery": delivery_id, "repository": ask.repository, "actor": ask.actor}
        try:
            tenant = self._tenants.tenant_of_installation(ask.installation_id)
        except (ClientError, BotoCoreError) as exc:
            # Secrets Manager failing: nothing was claimed or done, GitHub may redeliver.
            log.warning("github event: the installation's tenant cannot be read: %s", exc)
            raise ServiceUnavailableError(
                "The installation's tenant cannot be read right now; nothing was done. "
                "Redeliver the event later."
            ) from None
        if tenant is None:
            log.warning("github event of an unknown installation", extra=context)
            return EventOutcome("ignored", "unknown_installation")
        try:
            claimed = _DELIVERY.fullmatch(delivery_id) and self._claims.claim(delivery_id)
        except (ClientError, BotoCoreError) as exc:
            # DynamoDB failing: nothing was claimed or done, GitHub may redeliver.
            log.warning("github event: the delivery cannot be claimed: %s", exc, extra=context)
            raise ServiceUnavailableError(
                "The delivery cannot be recorded right now; nothing was done. "
                "Redeliver the event later."
            ) from None
        if not claimed:
            log.info("github delivery replayed (or without an id)", extra=context)
            return EventOutcome("ignored", "replayed_delivery")
        try:
            return self._start(tenant, delivery_id, ask)
        except (GitHubError, CredentialUnavailableError, ImportError) as exc:
            # Nothing was started: a redelivery may try again. (ImportError: an App's JWT
            # needs PyJWT and cryptography, which this function may not have.)
            self._release(delivery_id, context)
            log.warning("github event not acted on: %s", exc, extra=context)
            return EventOutcome("ignored", "github_unavailable")
        except (ClientError, BotoCoreError) as exc:
            # AWS failing (the tenant's credential unreadable): give the claim back, say 503.
            self._release(delivery_id, context)
            log.warning("github event not acted on: %s", exc, extra=context)
            raise ServiceUnavailableError(
                "A service this event needs failed; nothing was done. Redeliver it later."
            ) from None

    def _release(self, delivery_id: str, context: dict[str, Any]) -> None:
        """Give a claim back so that a redelivery acts; if that fails too, the claim stays
        until its TTL (a redelivery meanwhile is answered as replayed), and the answer is the
        one the failure that came first asks for."""
        try:
            self._claims.release(delivery_id)
        except (ClientError, BotoCoreError) as exc:
            get_logger().warning(
                "github delivery claim kept (release failed): %s", exc, extra=context
            )

    # ------------------------------------------------------------ reading the event

    def _ask(self, event_name: str, payload: Any) -> _Ask | str:
        """What the delivery asks for, or why it is ignored."""
        if not isinstance(payload, dict):
            return "not_an_object"
        sender = _obj(payload, "sender")
        issue = _obj(payload, "issue")
        repository = _obj(payload, "repository")
        installation = _obj(payload, "installation").get("id")
        if event_name == "issue_comment":
            if payload.get("action") != "created":
                return "not_a_new_comment"
            comment = _obj(payload, "comment")
            text = _text(comment.get("body"))
            if MARKER in text or comment.get("performed_via_github_app"):
                return "own_comment"
            if not self._mention.search(text):
                return "no_mention"
        elif event_name == "issues":
            if payload.get("action") != "labeled" or not self._label:
                return "not_a_label"
            if _obj(payload, "label").get("name") != self._label:
                return "other_label"
            text = _text(issue.get("body"))
        else:
            return f"event_{event_name or 'unnamed'}_not_handled"[:80]
        login = sender.get("login")
        if sender.get("type") == "Bot" or not isinstance(login, str) or login.endswith("[bot]"):
            return "bot_sender"
        full_name = repository.get("full_name")
        number = issue.get("number")
        if not isinstance(full_name, str) or not _FULL_NAME.fullmatch(full_name):
            return "no_repository"
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            return "no_issue"
        if not isinstance(installation, int) or isinstance(installation, bool):
            return "no_installation"
        return _Ask(
            installation_id=installation,
            repository=full_name,
            number=number,
            is_pull_request=bool(issue.get("pull_request")),
            title=_text(issue.get("title"))[:200] or f"#{number}",
            body=_text(issue.get("body"))[:MAX_QUOTED_CHARS],
            request=text[:MAX_QUOTED_CHARS],
            actor=login,
        )

    # ------------------------------------------------------------ starting the job

    def _start(self, tenant: str, delivery_id: str, ask: _Ask) -> EventOutcome:
        owner, name = ask.repository.split("/", 1)
        credential = self._credentials.for_job(tenant, name, COMMENT_PERMISSIONS)
        try:
            token = credential.token
            role = self._rest.collaborator_permission(token, owner, name, ask.actor)
            if role not in WRITE_ROLES:
                get_logger().warning(
                    "github event by an actor without write access",
                    extra={"delivery": delivery_id, "actor": ask.actor, "role": role},
                )
                return EventOutcome("ignored", "no_write_access")
            options, updates = self._options(tenant, token, owner, name, ask)
            comment = self._rest.create_issue_comment(
                token, owner, name, ask.number, _accepted(ask.actor)
            )
            body = {
                **options,
                "prompt": PROMPT.render(lambda key: _value(ask, key)),
                "metadata": {
                    "github_repository": ask.repository,
                    "github_number": str(ask.number),
                    "github_comment_id": str(comment["id"]),
                    "github_delivery": delivery_id,
                    "github_actor": ask.actor,
                },
            }
            try:
                request = self._jobs.parse_request(body)
                submission = self._jobs.submit(
                    tenant,
                    request,
                    idempotency_key=f"github-{delivery_id}",
                    source="github",
                    pending_cap=False,
                    updates_pull_request_of=updates,
                )
            except (RequestValidationError, ClaudeJobsError) as exc:
                detail = getattr(exc, "detail", None) or str(exc)
                self._rest.update_issue_comment(
                    token, owner, name, comment["id"], f"{MARKER}\nNo job was started: {detail}"
                )
                get_logger().warning("github event: job refused: %s", detail)
                return EventOutcome("ignored", "job_refused")
            job = submission.job
            self._rest.update_issue_comment(
                token, owner, name, comment["id"], _accepted(ask.actor, job.job_id)
            )
            get_logger().info(
                "github event started job %s",
                job.job_id,
                extra={"delivery": delivery_id, "tenant_id": tenant, "job_id": job.job_id},
            )
            return EventOutcome("started", "job_started", job.job_id)
        finally:
            credential.close()

    def _options(
        self, tenant: str, token: str, owner: str, name: str, ask: _Ask
    ) -> tuple[dict[str, Any], str | None]:
        """The job's options (its tools: GITHUB_ALLOWED_TOOLS, so that it may make the change
        asked for), and the job whose pull request it updates: an issue gets a pull request; a
        pull request the worker opened continues its job's session on its branch, and the
        follow-up's changes are pushed onto that branch (the same pull request); another pull
        request gets a pull request onto its branch."""
        url = f"{self._git_url}/{owner}/{name}"
        options: dict[str, Any] = {"allowed_tools": list(self._tools)}
        if not ask.is_pull_request:
            return {**options, "repository": {"url": url}, "pull_request": {}}, None
        pull = self._rest.get_pull_request(token, owner, name, ask.number)
        branch = str((pull.get("head") or {}).get("ref") or "")
        options["repository"] = {"url": url, "ref": branch}
        options["pull_request"] = {"base": branch}
        own = _OWN_BRANCH.fullmatch(branch)
        updates = None
        if own is not None:
            try:
                earlier = self._jobs.get(tenant, own["job_id"])
            except ClaudeJobsError:
                earlier = None
            if earlier is not None and earlier.session_id:
                options["session_id"] = earlier.session_id
                updates = earlier.job_id  # checked again by submit, and by the worker
        return options, updates


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _value(ask: _Ask, key: str) -> str:
    return {
        "title": ask.title,
        "number": str(ask.number),
        "actor": "@" + ask.actor,
        "kind": "pull request" if ask.is_pull_request else "issue",
        "repository": ask.repository,
        "request": ask.request,
        "body": ask.body or "(none)",
    }[key]


def _accepted(actor: str, job_id: str | None = None) -> str:
    line = f"@{actor}: working on it" + (f" (job `{job_id}`)." if job_id else ".")
    return f"{MARKER}\n{line}"


def parse_payload(raw: bytes) -> Any:
    """The delivery's JSON (ValueError when it is not)."""
    return json.loads(raw.decode("utf-8"))

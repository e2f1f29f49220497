"""A job's repository (issue 24): cloned before the agent starts, its changes committed,
pushed and proposed as a pull request after it succeeds — by the worker, never the agent.

Before the run (`RepositoryRun.prepare`): the worker fetches the job's `ref` (or the default
branch), shallow, through the Git broker into a Git directory of its own outside the agent's
reach (`<sandbox>/git`, 0700, the worker's), and clones that into the working directory for the
agent, whose `origin` is the repository's real URL; the agent's Git config maps the Git host to
the broker with its job token. A later segment finds the working directory restored and only
fetches again. Over `REPOSITORY_MAX_BYTES` → `repository_too_large`; an unknown repository or a
tenant without a credential → `repository_unavailable`.

After a successful run (`deliver`), with `pull_request`: the worker's own Git directory takes
the agent's working tree as it is (`git add -A`: the agent's `.git`, its hooks and config are
never used; `out/` is left out), commits it (author from settings) on the fetched commit, pushes
`claude-jobs/<job_id>` through the broker and opens the pull request — or finds the one an
earlier attempt opened. No change → `pull_request_skipped: "no_changes"`; a failed push or
pull request → `pull_request_failed`, the result kept.

A follow-up that updates an earlier job's pull request (`Job.updates_pull_request_of`, set by
the service; checked again here against the stored earlier job: same tenant, same session, same
repository, cloned from that job's branch): its agent may push nothing; the worker commits onto
the branch's tip it fetched and pushes with a token of its own, issued only now, that may only
fast-forward that branch from that tip (`git_policy`). The job then shows that pull request; if
the branch moved meanwhile (or the pull request is no longer open), nothing is pushed and the
job ends `pull_request_failed`, its result kept.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..github.credentials import CredentialUnavailableError, JobCredential, JobCredentials
from ..github.rest import GitHubError, GitHubRest
from ..models import Job, JobErrorInfo, PullRequestInfo
from ..observability import deferred_logger
from ..repository_models import RepoName, job_branch, pull_request_to_update, repo_name_in
from .artifacts import OUT_DIR
from .git_broker import GitBroker
from .ports import AgentOutcome

if TYPE_CHECKING:
    from ..settings import Settings
    from .sandbox import Sandbox

log = deferred_logger()

REPOSITORY_UNAVAILABLE = "repository_unavailable"
REPOSITORY_TOO_LARGE = "repository_too_large"
PULL_REQUEST_FAILED = "pull_request_failed"
#: Seconds one git command of the worker may take.
GIT_TIMEOUT_SECONDS = 600
_SHA = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class GitHubWorker:
    """What the worker needs for repositories: credentials, the REST client, the broker."""

    credentials: JobCredentials
    rest: GitHubRest
    broker: GitBroker


class RepositoryError(Exception):
    """The job cannot have its repository: ends it with `code` (no agent run)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def outcome(self) -> AgentOutcome:
        return AgentOutcome("failed", error=JobErrorInfo(code=self.code, message=str(self)[:2000]))


class RepositoryRun:
    """One job's repository: its credential and broker token, live until `close`."""

    def __init__(
        self, github: GitHubWorker, settings: Settings, job: Job, original: Job | None = None
    ) -> None:
        spec = job.options.repository
        assert spec is not None
        name = repo_name_in(settings.github_git_url, spec.url)
        if name is None:
            raise RepositoryError(
                REPOSITORY_UNAVAILABLE,
                f"{spec.url} is not a repository of this deployment's Git host",
            )
        self.name: RepoName = name
        self.job = job
        self.settings = settings
        self.github = github
        self.credential: JobCredential | None = None
        self.token: str | None = None
        self.base_sha = ""
        self.branch = ""  # the branch checked out (the pull request's default base)
        #: The branch of the earlier job whose pull request this one updates, or None.
        self.updates = _updated_branch(job, original)
        try:
            self.credential = github.credentials.for_job(job.tenant_id, name.name)
        except CredentialUnavailableError as exc:
            raise RepositoryError(REPOSITORY_UNAVAILABLE, str(exc)) from None
        found = github.rest.get_repository(self.credential.token, name.owner, name.name)
        if found is None:
            self.close()
            raise RepositoryError(
                REPOSITORY_UNAVAILABLE,
                f"repository {name.full_name} was not found, or the tenant's credential "
                "cannot reach it",
            )
        self.default_branch = str(found.get("default_branch") or "main")
        github.broker.start()
        self.token = github.broker.issue(
            job.job_id,
            name,
            self.credential.token,
            settings.repository_max_bytes,
            branch=None if self.updates else "own",  # a follow-up's agent pushes nothing
        )

    # ------------------------------------------------------------ before the run

    @property
    def remote(self) -> str:
        return f"{self.github.broker.url}/{self.name.full_name}.git"

    def _git(self, args: list[str], *, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_env(self.settings),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, args[:2], done.stdout, done.stderr)
        return done.stdout.strip()

    def _auth(self, token: str | None = None) -> list[str]:
        return ["-c", f"http.extraHeader=Authorization: Bearer {token or self.token}"]

    def prepare(self, sandbox: Sandbox, restored: bool) -> AgentOutcome | None:
        """Fetch into the worker's Git directory and (unless restored) clone for the agent;
        the agent's Git config. A failure outcome, or None."""
        assert sandbox.root is not None
        private = sandbox.root / "git"
        spec = self.job.options.repository
        assert spec is not None
        ref = spec.ref or self.default_branch
        if self.updates is not None and self.job.pull_request_base_sha:
            ref = self.job.pull_request_base_sha  # a later segment: the tip the first fetched
        try:
            os.mkdir(private, 0o700)
            self._git(["init", "-q", "--bare", str(private)])
            self._git(
                [*self._auth(), "-C", str(private), "fetch", "-q", "--depth=1", "--no-tags",
                 self.remote, ref]
            )  # fmt: skip
            self.base_sha = self._git(["-C", str(private), "rev-parse", "FETCH_HEAD"])
        except subprocess.CalledProcessError as exc:
            grant = self.github.broker.grant_for(self.token)
            if grant is not None and grant.over_cap:
                return _too_large(self.settings)
            return RepositoryError(
                REPOSITORY_UNAVAILABLE,
                f"{self.name.full_name} at {ref!r} could not be fetched: " + _tail(exc.stderr),
            ).outcome()
        self.branch = spec.ref or self.default_branch
        if _is_sha(self.branch):
            self.branch = self.default_branch
        self._git(["-C", str(private), "update-ref", f"refs/heads/{self.branch}", self.base_sha])
        self._git(["-C", str(private), "symbolic-ref", "HEAD", f"refs/heads/{self.branch}"])
        (private / "info").mkdir(exist_ok=True)
        (private / "info" / "exclude").write_text(f"/{OUT_DIR}/\n")
        if not restored:
            work = sandbox.work_dir
            self._git(["clone", "-q", "--no-hardlinks", str(private), str(work)])
            self._git(["-C", str(work), "remote", "set-url", "origin", spec.url])
            with (work / ".git" / "info" / "exclude").open("a") as exclude:
                exclude.write(f"/{OUT_DIR}/\n")
            for root, directories, files in os.walk(work):
                for entry in (*directories, *files):
                    sandbox.give(Path(root) / entry)
            sandbox.give(work)
        if _size(private) + _size(sandbox.work_dir) > self.settings.repository_max_bytes:
            return _too_large(self.settings)
        self._write_agent_config(sandbox)
        return None

    def _write_agent_config(self, sandbox: Sandbox) -> None:
        """The agent's Git config: the Git host through the broker, with its job token only."""
        broker = self.github.broker.url
        settings = self.settings
        text = (
            f'[url "{broker}/"]\n\tinsteadOf = {settings.github_git_url.rstrip("/")}/\n'
            f'[http "{broker}/"]\n\textraHeader = Authorization: Bearer {self.token}\n'
            f"[user]\n\tname = {settings.git_author_name}\n\temail = {settings.git_author_email}\n"
        )
        path = sandbox.home / ".gitconfig"
        path.write_text(text)
        os.chmod(path, 0o600)
        sandbox.give(path)

    # ------------------------------------------------------------ after the run

    def deliver(self, sandbox: Sandbox, outcome: AgentOutcome) -> AgentOutcome:
        """Commit, push and open the pull request (a successful run with `pull_request`)."""
        spec = self.job.options.pull_request
        if spec is None or outcome.ending != "succeeded" or not self.base_sha:
            return outcome
        assert sandbox.root is not None and self.credential is not None
        if self.updates is not None:
            return self._update(sandbox, outcome, self.updates)
        branch = job_branch(self.job.job_id)
        try:
            tree = self._stage(sandbox)  # (a Git directory of the worker's, made now)
            if tree is None:
                return replace(outcome, pull_request_skipped="no_changes")
            title = spec.title or _title(self.job)
            head = self._commit(tree, title)
            self._git([*self._auth(), *tree, "push", "-q", self.remote,
                       f"+{head}:refs/heads/{branch}"])  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", "") or ""
            return _failed(outcome, f"the changes could not be pushed: {_tail(stderr)}")
        rest, token, name = self.github.rest, self.credential.token, self.name
        try:
            pull = rest.find_pull_request(token, name.owner, name.name, branch)
            if pull is None:
                pull = rest.create_pull_request(
                    token,
                    name.owner,
                    name.name,
                    head=branch,
                    base=spec.base or self.branch,
                    title=title,
                    body=spec.body or _body(self.job, outcome),
                    draft=spec.draft,
                )
        except GitHubError as exc:
            return _failed(outcome, f"branch {branch} was pushed; the pull request failed: {exc}")
        return replace(outcome, pull_request=_pull_request_info(pull, branch, head))

    def _stage(self, sandbox: Sandbox) -> list[str] | None:
        """The agent's working tree staged on the fetched commit in a Git directory made now
        that nothing of the agent runs (its config, hooks and attributes are the worker's:
        where worker and agent are one user, the agent could have written into the one made
        before the run): the git arguments naming both, or None when nothing changed."""
        assert sandbox.root is not None
        private = tempfile.mkdtemp(prefix="git-", dir=sandbox.root)
        self._git(["init", "-q", "--bare", private])
        self._git([*self._auth(), "-C", private, "fetch", "-q", "--depth=1", "--no-tags",
                   self.remote, self.base_sha])  # fmt: skip
        self._git(["-C", private, "update-ref", "refs/heads/work", self.base_sha])
        self._git(["-C", private, "symbolic-ref", "HEAD", "refs/heads/work"])
        _exclude(Path(private), sandbox)
        tree = ["--git-dir", private, "--work-tree", str(sandbox.work_dir)]
        self._git([*tree, "add", "-A", "--", "."])
        changed = subprocess.run(
            ["git", *tree, "diff", "--no-ext-diff", "--cached", "--quiet", self.base_sha],
            env=_git_env(self.settings),
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        ).returncode
        return None if changed == 0 else tree

    def _commit(self, tree: list[str], title: str) -> str:
        self._git([*tree, "commit", "-q", "--no-verify", "-m", title])
        return self._git([*tree, "rev-parse", "HEAD"])

    def _update(self, sandbox: Sandbox, outcome: AgentOutcome, branch: str) -> AgentOutcome:
        """A follow-up's delivery: its changes as one commit on `branch`'s tip fetched before
        the run, pushed fast-forward with a token that may do only that; the job shows the
        pull request it updated."""
        assert self.credential is not None
        rest, name = self.github.rest, self.name
        try:
            pull = rest.find_pull_request(self.credential.token, name.owner, name.name, branch)
        except GitHubError as exc:
            return _failed(outcome, f"the pull request of {branch} could not be read: {exc}")
        if pull is None or pull.get("state", "open") != "open":
            return _failed(outcome, f"{branch} has no open pull request; nothing was pushed")
        pushing = None
        try:
            tree = self._stage(sandbox)
            if tree is None:
                return replace(outcome, pull_request_skipped="no_changes")
            spec = self.job.options.pull_request
            head = self._commit(tree, (spec.title if spec else None) or _title(self.job))
            pushing = self.github.broker.issue(
                self.job.job_id,
                name,
                self.credential.token,
                self.settings.repository_max_bytes,
                branch=branch,
                fast_forward_from=self.base_sha,
            )
            try:
                self._git([*self._auth(pushing), *tree, "push", "-q", self.remote,
                           f"{head}:refs/heads/{branch}"])  # fmt: skip
            except subprocess.CalledProcessError as exc:
                return _failed(outcome, self._refused_update(branch, exc.stderr))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", "") or ""
            return _failed(outcome, f"the changes could not be pushed: {_tail(stderr)}")
        finally:
            if pushing is not None:
                self.github.broker.revoke(pushing)
        return replace(outcome, pull_request=_pull_request_info(pull, branch, head))

    def _refused_update(self, branch: str, stderr: str | None) -> str:
        """Why a follow-up's push failed, from the branch's tip read again: it moved since the
        fetch (someone else pushed), it is gone, or the host refused the push itself (a
        protected branch, a hook, an outage) with the tip where this job found it."""
        base = self.base_sha[:12]
        try:
            listed = self._git([*self._auth(), "ls-remote", self.remote, f"refs/heads/{branch}"])
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return (
                f"the push to {branch} failed and its tip could not be read again; nothing "
                f"was pushed: {_tail(stderr)}"
            )
        tip = listed.split()[0] if listed else None
        if tip is None:
            return f"{branch} no longer exists on the repository; nothing was pushed"
        if tip != self.base_sha:
            return (
                f"{branch} moved since this job fetched it at {base} (now at {tip[:12]}: the "
                f"update is not a fast-forward); nothing was pushed"
            )
        return f"the repository refused the push to {branch} (still at {base}): {_tail(stderr)}"

    def close(self) -> None:
        """Revoke the broker token and a minted credential (never raises)."""
        if self.token is not None:
            self.github.broker.revoke(self.token)
            self.token = None
        if self.credential is not None:
            try:
                self.credential.close()
            except Exception as exc:
                log.warning("job %s: token not revoked (%s)", self.job.job_id, type(exc).__name__)


def _updated_branch(job: Job, original: Job | None) -> str | None:
    """The branch of the job whose pull request `job` updates, when the stored `original`
    (read by the worker, by `job.updates_pull_request_of`) is the same tenant's, in the same
    session, on the same repository, and `job` was cloned from its branch; else None (the
    job opens a pull request of its own)."""
    wanted = job.updates_pull_request_of
    spec = job.options.repository
    if wanted is None or spec is None or job.options.pull_request is None:
        return None
    found = pull_request_to_update(original, job.tenant_id, job.session_id, spec.url)
    if found != wanted or spec.ref != job_branch(wanted):
        log.warning("job %s does not update the pull request of %s", job.job_id, wanted)
        return None
    return job_branch(wanted)


def open_repository(
    github: GitHubWorker | None, settings: Settings, job: Job, original: Job | None = None
) -> RepositoryRun | None:
    """The job's repository run (None: the job has none). RepositoryError: it cannot."""
    if job.options.repository is None:
        return None
    if github is None:
        raise RepositoryError(REPOSITORY_UNAVAILABLE, "this deployment has no Git host configured")
    try:
        return RepositoryRun(github, settings, job, original)
    except GitHubError as exc:
        if exc.status == 0 or exc.status >= 500:
            raise  # the host is down: an infrastructure fault, retried
        raise RepositoryError(REPOSITORY_UNAVAILABLE, str(exc)) from None


def github_worker(settings: Settings, secrets_client: Any) -> GitHubWorker:
    """The deployment's GitHub wiring: tenants' secrets, the REST client, a broker (started
    with the first repository job)."""
    from ..github.wiring import github_credentials

    rest = GitHubRest(settings.github_api_url)
    return GitHubWorker(
        github_credentials(settings, secrets_client, rest), rest, GitBroker(settings.github_git_url)
    )


def _git_env(settings: Settings) -> dict[str, str]:
    """The worker's git: no system or user config, no prompt, the deployment's author."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_0": "core.hooksPath",
        "GIT_CONFIG_VALUE_0": os.devnull,
        "GIT_CONFIG_KEY_1": "safe.directory",
        "GIT_CONFIG_VALUE_1": "*",
        "GIT_CONFIG_KEY_2": "core.fsmonitor",
        "GIT_CONFIG_VALUE_2": "false",
        "GIT_AUTHOR_NAME": settings.git_author_name,
        "GIT_AUTHOR_EMAIL": settings.git_author_email,
        "GIT_COMMITTER_NAME": settings.git_author_name,
        "GIT_COMMITTER_EMAIL": settings.git_author_email,
        "LANG": "C.UTF-8",
    }


def _exclude(git_dir: Path, sandbox: Sandbox) -> None:
    """The Git directory's excludes: `out/` (artifacts), and any file the worker must not
    read for the agent: another user's (as root, a uid per job), or one with several links
    (a hard link to a file outside the working directory)."""
    lines = [f"/{OUT_DIR}/"]
    owner = sandbox.owner_uid
    work = sandbox.work_dir
    for root, directories, files in os.walk(work):
        directories[:] = [d for d in directories if not (root == str(work) and d == ".git")]
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and (
                info.st_nlink > 1 or (owner is not None and info.st_uid != owner)
            ):
                relative = os.path.relpath(path, work)
                lines.append("/" + "".join("\\" + c if c in "*?[\\!# " else c for c in relative))
                log.warning("not committed (several links, or another owner): %s", relative)
    info_dir = git_dir / "info"
    info_dir.mkdir(exist_ok=True)
    (info_dir / "exclude").write_text("\n".join(lines) + "\n")


def _is_sha(ref: str) -> bool:
    return len(ref) in (40, 64) and set(ref) <= _SHA


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _too_large(settings: Settings) -> AgentOutcome:
    return RepositoryError(
        REPOSITORY_TOO_LARGE,
        f"the repository is larger than REPOSITORY_MAX_BYTES ({settings.repository_max_bytes})",
    ).outcome()


def _tail(stderr: str | bytes | None) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[-600:]


def _failed(outcome: AgentOutcome, message: str) -> AgentOutcome:
    return replace(
        outcome,
        ending="failed",
        error=JobErrorInfo(code=PULL_REQUEST_FAILED, message=message[:2000]),
    )


def _title(job: Job) -> str:
    first = (job.prompt or "").strip().splitlines()
    return (first[0] if first else f"claude-jobs {job.job_id}")[:256]


def _body(job: Job, outcome: AgentOutcome) -> str:
    answer = (outcome.text or "").strip()
    return (f"Opened by claude-jobs for job `{job.job_id}`.\n\n{answer}")[:60_000]


def _pull_request_info(pull: dict[str, Any], branch: str, head: str) -> PullRequestInfo:
    """What a job records of the pull request GitHub answered (opened or updated)."""
    return PullRequestInfo(
        url=str(pull.get("html_url") or ""),
        number=int(pull.get("number") or 0),
        branch=branch,
        head_sha=head,
    )

"""Repositories and pull requests (issue 24): the job's `repository` and `pull_request`
options, and what a finished job shows of the pull request the worker opened.

A repository URL is `<GITHUB_GIT_URL>/<owner>/<repo>` (optionally `.git`): its form is checked
here, its host against the deployment's `GITHUB_GIT_URL` by `repository_url_problem` (the API's
deployment bounds, `service/limits.py`, and the worker again before it clones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from .model_base import Model

if TYPE_CHECKING:
    from .models import Job

#: A repository URL's length at most.
MAX_REPOSITORY_URL_CHARS = 512
#: A ref or branch name's length at most (Git has no limit; GitHub's is about this).
MAX_REF_CHARS = 255
MAX_TITLE_CHARS = 256
#: GitHub's own limit on a pull request's body.
MAX_BODY_CHARS = 65_536

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_REPO_PATH = re.compile(rf"^/(?P<owner>{_OWNER})/(?P<name>{_NAME})/?$")
#: The same below a path prefix (a Git host served under one, like the local stand-in's).
_PREFIXED_REPO_PATH = re.compile(rf"^(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*/{_OWNER}/{_NAME}/?$")
#: A branch, tag or commit: Git's ref-name rules, simplified to a safe subset (no `..`, no
#: `@{`, no leading `-` or `/`, no `.lock` ending, no control or special characters).
REF_PATTERN = r"^[A-Za-z0-9_+][A-Za-z0-9._/+-]*$"


def _ref_name(ref: str) -> str:
    if (
        ".." in ref
        or "//" in ref
        or "/." in ref
        or ref.endswith((".lock", "/", "."))
        or ref == "HEAD"
    ):
        raise ValueError("not a valid branch, tag or commit name")
    return ref


RefName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_REF_CHARS, pattern=REF_PATTERN),
    AfterValidator(_ref_name),
]


@dataclass(frozen=True)
class RepoName:
    """A repository of the Git host: `owner/name` (the name without `.git`)."""

    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme, netloc, path) of a plain URL: no user, query, fragment, or odd characters."""
    if any(ord(c) <= 0x20 or c in "\\%" for c in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return None
    if "#" in url or "?" in url:
        return None
    return parts.scheme, parts.netloc.lower(), parts.path


def repository_of(url: str) -> RepoName | None:
    """`owner/name` of a repository URL of the plain form (any host), or None."""
    split = _split(url)
    if split is None:
        return None
    match = _REPO_PATH.fullmatch(split[2])
    if match is None:
        return None
    name = match["name"]
    if name.endswith(".git"):
        name = name[: -len(".git")]
    if not name or name in (".", "..") or name.startswith("."):
        return None
    return RepoName(match["owner"], name)


def repository_url_problem(git_url: str, url: str) -> str | None:
    """Why `url` is not a repository of the deployment's Git host `git_url`, or None."""
    host = _split(git_url.rstrip("/"))
    split = _split(url)
    if host is None or split is None:
        return "must be a plain http(s) URL: no user, password, query or fragment"
    if split[0] != host[0] or split[1] != host[1] or not split[2].startswith(host[2] + "/"):
        return f"must be a repository of {git_url.rstrip('/')} (<owner>/<repo>)"
    if repository_of(host[0] + "://" + host[1] + split[2][len(host[2]) :]) is None:
        return f"must be {git_url.rstrip('/')}/<owner>/<repo> (optionally .git)"
    return None


def repo_name_in(git_url: str, url: str) -> RepoName | None:
    """`owner/name` of `url` when it is a repository of `git_url`, else None."""
    if repository_url_problem(git_url, url) is not None:
        return None
    host = _split(git_url.rstrip("/"))
    split = _split(url)
    assert host is not None and split is not None
    return repository_of(host[0] + "://" + host[1] + split[2][len(host[2]) :])


class RepositorySpec(Model):
    """The repository a job works on: cloned into its working directory before it starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REPOSITORY_URL_CHARS)] = (
        Field(
            description="`<GITHUB_GIT_URL>/<owner>/<repo>` (optionally `.git`): a repository of "
            "the deployment's Git host (https://github.com by default)"
        )
    )
    ref: RefName | None = Field(
        None,
        description="Branch, tag or commit to check out; default: the repository's default branch",
    )

    @field_validator("url")
    @classmethod
    def _plain_url(cls, url: str) -> str:
        split = _split(url)
        if split is None or not _PREFIXED_REPO_PATH.fullmatch(split[2]) or "/." in split[2]:
            raise ValueError(
                "must be a plain http(s) URL of a repository, <host>/<owner>/<repo>[.git], "
                "with no user, password, query or fragment"
            )
        return url


class PullRequestSpec(Model):
    """The pull request the worker opens when the job succeeds with changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: RefName | None = Field(
        None, description="The branch to merge into; default: the repository's default branch"
    )
    title: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS)] | None = (
        Field(None, description="Default: the first line of the prompt")
    )
    body: Annotated[str, StringConstraints(max_length=MAX_BODY_CHARS)] | None = Field(
        None, description="Default: the job's id and the agent's answer"
    )
    draft: bool = Field(False, description="Open it as a draft")


class PullRequestInfo(Model):
    """The pull request the worker opened for a job."""

    url: str
    number: int
    branch: str
    head_sha: str


#: Why a job that asked for a pull request has none.
PullRequestSkipped = Literal["no_changes"]


def job_branch(job_id: str) -> str:
    """The one branch a job may push: `claude-jobs/<job_id>`."""
    return f"claude-jobs/{job_id}"


def pull_request_to_update(
    original: Job | None, tenant_id: str, session_id: str | None, repository_url: str | None
) -> str | None:
    """`original`'s job id when a job of `tenant_id` continuing `session_id` on
    `repository_url` may update its pull request (push onto its branch): the same tenant,
    the same session, the same repository. None otherwise. The service (submit) and the
    worker both ask, each from the stored original job."""
    if original is None or not session_id or repository_url is None:
        return None
    if original.tenant_id != tenant_id or original.session_id != session_id:
        return None
    spec = original.options.repository
    mine, theirs = repository_of(repository_url), repository_of(spec.url) if spec else None
    if mine is None or theirs is None or mine.full_name.lower() != theirs.full_name.lower():
        return None
    return original.job_id

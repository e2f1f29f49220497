"""Repositories and pull requests (issue 24): the `repository` and `pull_request` options are
checked against their form and the deployment's Git host; a bad one is a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from claude_jobs.errors import RequestValidationError
from claude_jobs.models import JobRequest
from claude_jobs.repository_models import RepoName, job_branch, repo_name_in, repository_of
from claude_jobs.service.limits import parse_request
from claude_jobs.settings import Settings

GITHUB = Settings()
LOCAL = Settings(GITHUB_GIT_URL="http://127.0.0.1:8123/git")


def _problems(settings: Settings, body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    try:
        parse_request(settings, {"prompt": "hi", **body})
    except RequestValidationError as exc:
        return [(tuple(e.loc), e.msg) for e in exc.errors]
    return []


@pytest.mark.parametrize(
    ("settings", "url", "name"),
    [
        (GITHUB, "https://github.com/octo/hello", RepoName("octo", "hello")),
        (GITHUB, "https://github.com/octo/hello.git", RepoName("octo", "hello")),
        (GITHUB, "https://GitHub.com/octo/my.repo_1-x/", RepoName("octo", "my.repo_1-x")),
        (LOCAL, "http://127.0.0.1:8123/git/demo/hello", RepoName("demo", "hello")),
    ],
)
def test_a_repository_of_the_deployments_git_host_is_accepted(
    settings: Settings, url: str, name: RepoName
) -> None:
    # Given a job on a repository of the deployment's Git host
    body = {"repository": {"url": url, "ref": "main"}, "pull_request": {"draft": True}}
    # Then it is valid, and names that repository
    assert _problems(settings, body) == []
    assert repo_name_in(settings.github_git_url, url) == name


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/octo/hello",  # not the host's scheme
        "https://gitlab.com/octo/hello",  # another host
        "https://github.com.evil.test/octo/hello",
        "https://github.com:8443/octo/hello",  # another port
        "https://user:pw@github.com/octo/hello",  # credentials
        "https://github.com/octo/hello?x=1",
        "https://github.com/octo/hello#frag",
        "https://github.com/octo",
        "https://github.com/octo/hello/tree/main",
        "https://github.com/octo/../hello",
        "https://github.com/octo/.git",
        "https://github.com/octo/%2e%2e",
        "https://github.com/-octo/hello",
        "https://github.com/octo/hel lo",
        "ssh://git@github.com/octo/hello",
        "file:///etc/passwd",
        "https://github.com/octo/" + "x" * 600,
    ],
)
def test_any_other_repository_url_is_a_422_on_the_url(url: str) -> None:
    # When a job names it
    problems = _problems(GITHUB, {"repository": {"url": url}})
    # Then the request is refused, naming the repository's url
    assert problems, url
    assert all(loc[:2] == ("body", "repository") for loc, _ in problems), problems


def test_the_local_stand_in_takes_only_its_own_path() -> None:
    assert _problems(LOCAL, {"repository": {"url": "http://127.0.0.1:8123/demo/hello"}})
    assert _problems(LOCAL, {"repository": {"url": "http://127.0.0.1:8124/git/demo/hello"}})
    assert _problems(LOCAL, {"repository": {"url": "https://github.com/demo/hello"}})


@pytest.mark.parametrize(
    "ref",
    ["", "-x", "/main", "a..b", "a//b", "main.lock", "main/", "a b", "a~1", "HEAD", "x" * 300],
)
def test_a_bad_ref_is_a_422(ref: str) -> None:
    problems = _problems(GITHUB, {"repository": {"url": "https://github.com/o/r", "ref": ref}})
    assert [loc for loc, _ in problems] == [("body", "repository", "ref")]


@pytest.mark.parametrize(
    ("pull_request", "field"),
    [
        ({"base": "a..b"}, "base"),
        ({"title": ""}, "title"),
        ({"title": "t" * 257}, "title"),
        ({"body": "b" * 65_537}, "body"),
        ({"draft": "maybe"}, "draft"),
        ({"reviewers": ["x"]}, "reviewers"),
    ],
)
def test_a_bad_pull_request_is_a_422_on_its_field(pull_request: dict[str, Any], field: str) -> None:
    body = {"repository": {"url": "https://github.com/o/r"}, "pull_request": pull_request}
    problems = _problems(GITHUB, body)
    assert [loc for loc, _ in problems] == [("body", "pull_request", field)]


def test_a_pull_request_without_a_repository_is_a_422() -> None:
    problems = _problems(GITHUB, {"pull_request": {}})
    assert len(problems) == 1 and "needs a repository" in problems[0][1]


def test_the_job_branch_and_a_plain_job_have_no_repository() -> None:
    assert job_branch("j-1") == "claude-jobs/j-1"
    assert JobRequest(prompt="hi").repository is None
    assert repository_of("https://github.com/o/r.git") == RepoName("o", "r")

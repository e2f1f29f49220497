"""The Git broker's push policy (issue 24): only `refs/heads/claude-jobs/<job_id>`, one update,
no delete; hostile or malformed receive-pack heads refuse the whole push."""

from __future__ import annotations

import pytest

from claude_jobs.worker.git_policy import push_problem

BRANCH = "claude-jobs/j-1"
OLD = "0" * 40
NEW = "a" * 40
SHA256 = "b" * 64


def pkt(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return f"{len(raw) + 4:04x}".encode() + raw


def push(*commands: str, caps: str = "report-status side-band-64k", tail: bytes = b"PACK") -> bytes:
    lines = [pkt(f"{commands[0]}\0{caps}\n")] + [pkt(c + "\n") for c in commands[1:]]
    return b"".join(lines) + b"0000" + tail


def test_creating_or_updating_the_jobs_branch_is_allowed() -> None:
    assert push_problem(push(f"{OLD} {NEW} refs/heads/{BRANCH}"), BRANCH) is None
    assert push_problem(push(f"{NEW} {'c' * 40} refs/heads/{BRANCH}"), BRANCH) is None
    assert push_problem(push(f"{OLD} {SHA256} refs/heads/{BRANCH}"), BRANCH) is None
    shallow = pkt(f"shallow {'d' * 40}\n") + push(f"{OLD} {NEW} refs/heads/{BRANCH}")
    assert push_problem(shallow, BRANCH) is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (push(f"{OLD} {NEW} refs/heads/main"), "not refs/heads/main"),
        (push(f"{OLD} {NEW} refs/heads/claude-jobs/j-2"), "only"),
        (push(f"{OLD} {NEW} refs/heads/{BRANCH}x"), "only"),
        (push(f"{OLD} {NEW} refs/tags/{BRANCH}"), "only"),
        (push(f"{OLD} {NEW} refs/heads/{BRANCH}/../main"), "only"),
        (push(f"{NEW} {OLD} refs/heads/{BRANCH}"), "deleted"),
        (push(f"{OLD} {NEW} refs/heads/{BRANCH}", f"{OLD} {NEW} refs/heads/main"), "one ref"),
        (push(f"{OLD} {NEW} refs/heads/{BRANCH}", f"{NEW} {OLD} refs/heads/{BRANCH}"), "one ref"),
        (push(f"{OLD} {NEW} refs/heads/main", f"{OLD} {NEW} refs/heads/{BRANCH}"), "one ref"),
        (b"0000PACK", "no ref update"),
        (b"", "before their flush"),
        (push(f"{OLD} {NEW} refs/heads/{BRANCH}")[:-8], "before their flush"),
        (b"00zz" + b"x" * 60, "hex"),
        (b"00A0" + b"x" * 200, "hex"),
        (b"0001" + b"0000", "not allowed"),
        (b"0004" + b"0000", "not allowed"),
        (b"fff1" + b"x" * 70000, "not allowed"),
        (b"0100" + b"x" * 10, "cut short"),
        (pkt(f"{OLD} {NEW}  refs/heads/{BRANCH}\0caps\n") + b"0000", "not a ref update"),
        (pkt(f"{NEW.upper()} {NEW} refs/heads/{BRANCH}\0caps\n") + b"0000", "not a ref update"),
        (pkt("push-cert\0caps\n") + b"0000", "not a ref update"),
        (
            pkt(f"{OLD} {NEW} refs/heads/{BRANCH}\0caps\n")
            + pkt(f"{OLD} {NEW} refs/heads/main\0x\n")
            + b"0000",
            "NUL",
        ),
        (pkt(b"\xff" * 10) + b"0000", "ASCII"),
        (b"".join(pkt(f"shallow {'d' * 40}\n") for _ in range(1200)) + b"0000", "too many"),
    ],
)
def test_any_other_push_is_refused_whole(body: bytes, why: str) -> None:
    problem = push_problem(body, BRANCH)
    assert problem is not None and why in problem, problem


# ---------------------------------------------------------------- a follow-up's pull request

#: The earlier job's branch a follow-up updates, and its tip when the worker fetched it.
UPDATED = "claude-jobs/j-original"
TIP = "e" * 40


def test_the_worker_may_fast_forward_the_updated_branch_from_the_tip_it_fetched() -> None:
    # Given the delivery grant of a follow-up (that branch, from that tip)
    body = push(f"{TIP} {NEW} refs/heads/{UPDATED}")
    # Then exactly that update passes (shallow lines before it too)
    assert push_problem(body, UPDATED, TIP) is None
    assert push_problem(pkt(f"shallow {TIP}\n") + body, UPDATED, TIP) is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        # a force push: the branch rewritten from another commit than the fetched tip
        (push(f"{'f' * 40} {NEW} refs/heads/{UPDATED}"), "fast-forwarded from eeeeeeeeeeee"),
        # a non-fast-forward after the branch moved: the old oid is the new upstream tip
        (push(f"{'1' * 40} {TIP[:39]}f refs/heads/{UPDATED}"), "not updated from 111111111111"),
        # a (re)creation: old zeros
        (push(f"{OLD} {NEW} refs/heads/{UPDATED}"), "not created"),
        # a delete
        (push(f"{TIP} {OLD} refs/heads/{UPDATED}"), "deleted"),
        # another branch, the follow-up's own, the base, a tag
        (push(f"{TIP} {NEW} refs/heads/main"), "only"),
        (push(f"{OLD} {NEW} refs/heads/claude-jobs/j-1"), "only"),
        (push(f"{TIP} {NEW} refs/tags/{UPDATED}"), "only"),
        # the right update smuggled beside another
        (push(f"{TIP} {NEW} refs/heads/{UPDATED}", f"{TIP} {OLD} refs/heads/main"), "one ref"),
        (push(f"{TIP} {NEW} refs/heads/{UPDATED}", f"{TIP} {NEW} refs/heads/{UPDATED}"), "one"),
    ],
)
def test_a_follow_ups_delivery_grant_refuses_anything_but_that_fast_forward(
    body: bytes, why: str
) -> None:
    problem = push_problem(body, UPDATED, TIP)
    assert problem is not None and why in problem, problem


@pytest.mark.parametrize(
    "command",
    [
        f"{TIP} {NEW} refs/heads/{UPDATED}",
        f"{OLD} {NEW} refs/heads/claude-jobs/j-follow-up",
        f"{TIP} {OLD} refs/heads/{UPDATED}",
    ],
)
def test_a_follow_ups_agent_may_push_nothing(command: str) -> None:
    # Given the agent's grant of a follow-up (no branch): even the exact fast-forward
    problem = push_problem(push(command), None)
    assert problem is not None and "may not push" in problem

"""What the Git broker lets a push do: update one ref, the job's branch, and nothing else.

A smart-HTTP push (`POST …/git-receive-pack`) starts with pkt-lines: optional `shallow <oid>`
lines, then the ref update commands `<old-oid> <new-oid> <ref>` (the first followed by NUL and
the client's capabilities), then a flush-pkt `0000`; the pack follows. `push_problem` reads
that head strictly and answers why the push is refused, or None: exactly one command, on
`refs/heads/claude-jobs/<job_id>`, that is not a delete (new oid all zeros). Anything it cannot
read as exactly that — a bad length, a delimiter, a push certificate, a truncated head, a second
command — refuses the whole push.

A follow-up that updates an earlier job's pull request (GitHub events) has two grants: its
agent's token may push nothing (`branch=None`), and the worker's delivery token, issued after
the agent has ended, may only fast-forward that job's branch from the tip the worker fetched
(`fast_forward_from`): the command's old oid must be exactly that tip (no create, and the
host's compare-and-swap refuses the update if the branch moved since), the new one not zeros
(no delete). The worker makes the pushed commit on that tip itself, so it descends from it.
"""

from __future__ import annotations

import re

#: A pkt-line's length field counts itself: 4 hex digits, 4 to 65520 (or 0000: flush).
MAX_PKT_LEN = 65520
_OID = r"(?:[0-9a-f]{40}|[0-9a-f]{64})"
_COMMAND = re.compile(rf"^(?P<old>{_OID}) (?P<new>{_OID}) (?P<ref>[!-~]+)$")
_SHALLOW = re.compile(rf"^shallow {_OID}$")


def pkt_lines(body: bytes, limit: int = 1000) -> tuple[list[bytes], int] | str:
    """The pkt-lines up to the first flush-pkt, and the offset after it; or why not."""
    lines: list[bytes] = []
    at = 0
    while True:
        if len(lines) > limit:
            return "too many lines before the flush"
        head = body[at : at + 4]
        if len(head) < 4:
            return "the commands end before their flush-pkt"
        if not re.fullmatch(rb"[0-9a-f]{4}", head):
            return "a pkt-line length is not 4 lower-case hex digits"
        size = int(head, 16)
        if size == 0:
            return lines, at + 4
        if size < 5 or size > MAX_PKT_LEN:
            return f"pkt-line length {size} is not allowed here"
        if at + size > len(body):
            return "a pkt-line is cut short"
        lines.append(body[at + 4 : at + size])
        at += size


def push_problem(
    body: bytes, branch: str | None, fast_forward_from: str | None = None
) -> str | None:
    """Why the push in `body` (a receive-pack request, decoded) may not go through, or None
    when it only creates or updates `refs/heads/<branch>` (with `fast_forward_from`: only
    updates it from exactly that oid). `branch` None: no push at all."""
    if branch is None:
        return "this job may not push (the worker pushes its changes onto the pull request)"
    read = pkt_lines(body)
    if isinstance(read, str):
        return read
    lines, _ = read
    wanted = f"refs/heads/{branch}"
    commands: list[re.Match[str]] = []
    for raw in lines:
        text = raw.removesuffix(b"\n")
        if not commands and b"\x00" in text:  # the first command: its capabilities follow NUL
            text = text.split(b"\x00", 1)[0]
        try:
            line = text.decode("ascii")
        except UnicodeDecodeError:
            return "a command is not ASCII"
        if not commands and _SHALLOW.fullmatch(line):
            continue
        if "\x00" in line:
            return "a command carries a NUL after the first"
        match = _COMMAND.fullmatch(line)
        if match is None:
            return f"not a ref update command: {line[:80]!r}"
        commands.append(match)
    if not commands:
        return "no ref update"
    if len(commands) > 1:
        return f"a push may update one ref, {wanted}, not {len(commands)}"
    command = commands[0]
    if command["ref"] != wanted:
        return f"a push may update only {wanted}, not {command['ref']}"
    if set(command["new"]) == {"0"}:
        return f"{wanted} may not be deleted"
    if fast_forward_from is not None and command["old"] != fast_forward_from:
        if set(command["old"]) == {"0"}:
            return f"{wanted} may only be updated, not created"
        return (
            f"{wanted} may only be fast-forwarded from {fast_forward_from[:12]}, "
            f"not updated from {command['old'][:12]}"
        )
    return None


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def rejection(body: bytes, reason: str) -> bytes | None:
    """A receive-pack answer that rejects every ref the push names with `reason` (the client
    shows `! [remote rejected] <ref> (<reason>)`), or None when no command can be read."""
    read = pkt_lines(body)
    if isinstance(read, str):
        return None
    refs: list[str] = []
    capabilities: set[str] = set()
    for raw in read[0]:
        text, _, caps = raw.removesuffix(b"\n").partition(b"\x00")
        match = _COMMAND.fullmatch(text.decode("ascii", "replace"))
        if match is None:
            continue
        if caps and not refs:
            capabilities = set(caps.decode("ascii", "replace").split())
        refs.append(match["ref"])
    if not refs or not capabilities & {"report-status", "report-status-v2"}:
        return None
    clean = "".join(c for c in reason if " " <= c <= "~")[:200]
    status = (
        pkt(b"unpack ok\n")
        + b"".join(pkt(f"ng {ref} {clean}\n".encode()) for ref in refs)
        + b"0000"
    )
    if capabilities & {"side-band-64k", "side-band"}:
        return pkt(b"\x01" + status) + b"0000"
    return status


def error_packet(message: str) -> bytes:
    """The smart-HTTP `ERR` packet: the client stops with `remote error: <message>`."""
    clean = "".join(c for c in message if " " <= c <= "~")[:300]
    return pkt(f"ERR {clean}\n".encode())

"""Free ports, and a blocker that makes a test fail the moment it opens a network socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from claude_jobs_tools.dev_process import free_port as free_port

#: Families the blocker leaves alone: a Unix socket pair stays in the process (asyncio's
#: self-pipe) and reaches nothing.
_LOCAL_FAMILIES = (socket.AF_UNIX,)


class SocketBlockedError(RuntimeError):
    """A test that must not touch the network opened a socket to an address."""


def _refuse(name: str) -> Any:
    original = getattr(socket.socket, name)

    def guard(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        if self.family in _LOCAL_FAMILIES:
            return original(self, *args, **kwargs)
        raise SocketBlockedError(
            f"socket.{name}{args!r}: this test runs with sockets blocked (tests/unit, "
            "tests/contract); move it to tests/integration if it needs the network"
        )

    return guard


@contextmanager
def sockets_blocked() -> Iterator[None]:
    """Inside: every bind, connect and connect_ex of an IP socket raises SocketBlockedError."""
    names = ("bind", "connect", "connect_ex")
    own = {name: socket.socket.__dict__.get(name) for name in names}
    for name in names:
        setattr(socket.socket, name, _refuse(name))
    try:
        yield
    finally:
        for name, method in own.items():
            if method is None:
                delattr(socket.socket, name)  # inherited from _socket.socket again
            else:
                setattr(socket.socket, name, method)


class socket_port:
    """A local port held bound (so nothing else takes it) until the block ends."""

    def __enter__(self) -> int:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return int(self._socket.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._socket.close()

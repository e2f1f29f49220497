"""Pure tests run with IP sockets blocked (tests/conftest.py, tests/support/network.py)."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.network import SocketBlockedError


def test_a_pure_test_can_neither_connect_nor_listen() -> None:
    # Given a test under tests/unit, When it connects or binds an IP socket, Then it fails
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with socket.socket() as sock, pytest.raises(SocketBlockedError):
        sock.bind(("127.0.0.1", 0))
    with pytest.raises(SocketBlockedError):
        httpx.get("http://127.0.0.1:9/", timeout=1)


def test_a_unix_socket_pair_stays_allowed() -> None:
    # Given asyncio's self-pipe kind of socket, When a pair is made and used, Then it works
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"

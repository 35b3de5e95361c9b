"""The server's listening sockets get TCP_NODELAY before the first visitor (ui/sockets.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from ui.sockets import listening_tcp_descriptors, send_without_delay
from ui.startup import warm_start


@contextmanager
def streamlit_like_listener() -> Iterator[socket.socket]:
    """A listening socket bound as Streamlit binds its own: dual-stack IPv6, protocol number 0
    (which is why asyncio leaves Nagle's algorithm on for its connections)."""
    listener = socket.socket(family=socket.AF_INET6)
    try:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        listener.listen()
        yield listener
    finally:
        listener.close()


def accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of the server's side of a new connection to LISTENER."""
    with socket.create_connection(("127.0.0.1", listener.getsockname()[1])):
        accepted, _ = listener.accept()
        with accepted:
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_connections_accepted_after_it_send_without_delay() -> None:
    with streamlit_like_listener() as listener:
        assert listener.proto == 0 and accepted_nodelay(listener) == 0
        assert listener.fileno() in listening_tcp_descriptors()
        assert send_without_delay() >= 1
        assert accepted_nodelay(listener) == 1


def test_only_listening_sockets_are_touched() -> None:
    with streamlit_like_listener() as listener:
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1])) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            assert client.fileno() not in listening_tcp_descriptors()
            send_without_delay()
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0


def test_the_servers_start_sets_it() -> None:
    async def start() -> None:
        async with warm_start(None):
            pass

    with streamlit_like_listener() as listener:
        asyncio.run(start())
        assert accepted_nodelay(listener) == 1

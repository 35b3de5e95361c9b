"""TCP_NODELAY on the server's listening sockets, so that every response leaves at once.

Streamlit (1.67) binds its listening socket with protocol number 0, so asyncio, which sets
TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP, leaves Nagle's algorithm on for every
connection it accepts. A response is written as its headers, then its body: on a kept-alive
connection the body waits for the browser to acknowledge the headers, which a browser delays by
40 ms. A first visit fetches ~110 scripts over six connections, and each took ~44 ms instead of
~2 (docs/benchmarks.md). Linux copies TCP_NODELAY from a listening socket to the connections
it accepts, so setting it there, before the first visitor, is enough.
"""

from __future__ import annotations

import os
import socket
import stat

OPEN_FILES = "/dev/fd"  # the process's descriptors (Linux, macOS); elsewhere nothing is set


def listening_tcp_descriptors() -> list[int]:
    """The descriptors of this process's listening TCP sockets (IPv4 and IPv6)."""
    try:
        descriptors = [int(name) for name in os.listdir(OPEN_FILES)]
    except OSError:
        return []
    listening = []
    for fd in descriptors:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                if (
                    sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.type == socket.SOCK_STREAM
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                ):
                    listening.append(fd)
        except OSError:  # closed since it was listed (e.g. /dev/fd's own descriptor)
            continue
    return listening


def send_without_delay() -> int:
    """TCP_NODELAY on every listening TCP socket of this process; returns how many."""
    descriptors = listening_tcp_descriptors()
    for fd in descriptors:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return len(descriptors)

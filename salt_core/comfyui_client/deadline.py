"""One deadline for the whole run, and sockets whose every read and write respects it.

A socket timeout alone bounds one silent read; a server that trickles a byte every second would still hold
a client forever. Here every recv / send first sets the socket timeout to what is left of the run (at most
`idle` seconds), so the run ends at its deadline however the server sends.
"""
from __future__ import annotations

import io
import math
import socket
import ssl
import time
import urllib.parse

from .errors import RunTimeout, ServerUnreachable

IDLE_SECONDS = 120.0  # the longest one read or write may stay silent (within the run's deadline)


class Deadline:
    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.end = math.inf if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return self.left() <= 0

    def check(self) -> None:
        if self.expired():
            raise RunTimeout(f"not finished within the timeout ({self.seconds:g} s)")

    def bound(self, idle: float = IDLE_SECONDS) -> float:
        """The timeout for the next blocking call: what is left of the run, at most `idle`."""
        self.check()
        return max(min(self.left(), idle), 0.001)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.left())))
        self.check()


class BoundedSocket:
    """A connected socket whose reads and writes end at the deadline (RunTimeout) or after `idle` silent
    seconds (TimeoutError)."""

    def __init__(self, sock: socket.socket, deadline: Deadline, idle: float = IDLE_SECONDS):
        self.sock, self.deadline, self.idle = sock, deadline, idle
        self._readers, self._closed = 0, False  # like a socket's makefile(): closed once its readers are

    def _timed(self, call, *args):
        self.sock.settimeout(self.deadline.bound(self.idle))
        try:
            return call(*args)
        except TimeoutError:
            self.deadline.check()
            raise

    def recv(self, n: int) -> bytes:
        return self._timed(self.sock.recv, n)

    def recv_into(self, buffer) -> int:
        return self._timed(self.sock.recv_into, buffer)

    def sendall(self, data: bytes) -> None:
        self._timed(self.sock.sendall, data)

    def makefile(self, mode: str = "rb", *args, **kwargs):
        """What http.client reads a response from: buffered, and bounded on every underlying read."""
        if mode != "rb":
            raise ValueError("only 'rb' is supported")
        self._readers += 1
        return io.BufferedReader(_RawReader(self))

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and not self._readers:
            self.sock.close()

    def close(self) -> None:
        self._closed = True
        if not self._readers:
            self.sock.close()


class _RawReader(io.RawIOBase):
    def __init__(self, sock: BoundedSocket):
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock._reader_closed()
        super().close()


def connect(url: str, deadline: Deadline, idle: float = IDLE_SECONDS) -> BoundedSocket:
    """TCP (and TLS for https / wss) to the URL's host; ServerUnreachable when that fails."""
    u = urllib.parse.urlsplit(url)
    secure = u.scheme in ("https", "wss")
    host, port = u.hostname, u.port or (443 if secure else 80)
    try:
        sock = socket.create_connection((host, port), timeout=deadline.bound(idle))
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except TimeoutError:
        deadline.check()
        raise ServerUnreachable(f"cannot reach ComfyUI at {host}:{port}: no answer within {idle:g} s") from None
    except (OSError, ssl.SSLError) as e:
        raise ServerUnreachable(f"cannot reach ComfyUI at {host}:{port}: {e.strerror or e}") from None
    return BoundedSocket(sock, deadline, idle)

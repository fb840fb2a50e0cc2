"""A small websocket client (RFC 6455, client side): text and binary messages in, text out; answers pings.

What a server sends is checked as it arrives: a frame or message longer than MAX_MESSAGE_BYTES is refused
from its header, before any of it is read; masked frames, reserved bits, fragmented or long control
frames are protocol errors. Every read ends at the run's deadline (deadline.py).
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct
import urllib.parse

from .deadline import IDLE_SECONDS, Deadline, connect
from .errors import BadAnswer, ServerError, UnsafeAnswer, shown, size_text

MAX_MESSAGE_BYTES = 64 << 20    # ComfyUI's largest messages are latent previews, well under 1 MiB
MAX_HANDSHAKE_BYTES = 64 << 10
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # fixed by RFC 6455
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketClosed(ConnectionError):
    pass


def _masked(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class WebSocket:
    def __init__(self, url: str, deadline: Deadline | None = None, idle: float = IDLE_SECONDS):
        u = urllib.parse.urlsplit(url)
        self.deadline = deadline or Deadline(None)
        self.sock = connect(url, self.deadline, idle)
        self._buf = bytearray()
        try:
            self._handshake(u)
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self, u: urllib.parse.SplitResult) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        while b"\r\n\r\n" not in self._buf:
            if len(self._buf) > MAX_HANDSHAKE_BYTES:
                raise BadAnswer(f"websocket handshake: more than {size_text(MAX_HANDSHAKE_BYTES)} of headers")
            self._fill()
        end = self._buf.index(b"\r\n\r\n")
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[:end + 4]
        status = head.split("\r\n", 1)[0]
        if status.split(" ")[1:2] != ["101"]:
            raise ServerError(f"websocket handshake refused: {shown(status, 120)}")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head.split("\r\n")[1:] if line)}
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise BadAnswer("websocket handshake: wrong Sec-WebSocket-Accept")

    def settimeout(self, seconds: float | None) -> None:
        """The longest one read may wait for the server (the run's deadline still applies)."""
        self.sock.idle = seconds if seconds is not None else IDLE_SECONDS

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)  # a timeout loses nothing: what came stays buffered
        if not chunk:
            raise WebSocketClosed("the server closed the connection")
        self._buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _header(self) -> tuple[bool, int, int] | None:
        """-> (fin, opcode, payload length) once a whole frame header is buffered (nothing consumed)."""
        buf = self._buf
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise BadAnswer("websocket: a frame with reserved bits set (no extension was agreed)")
        if second & 0x80:
            raise BadAnswer("websocket: a masked frame from the server (RFC 6455 forbids it)")
        n, at = second & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, at = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, at = struct.unpack("!Q", buf[2:10])[0], 10
        op = first & 0x0F
        if op >= 0x8 and (n > 125 or not first & 0x80):
            raise BadAnswer("websocket: a control frame longer than 125 bytes or fragmented")
        if n > MAX_MESSAGE_BYTES:
            raise UnsafeAnswer(f"websocket: a frame header claims {n} bytes, more than the "
                               f"{size_text(MAX_MESSAGE_BYTES)} cap of websocket messages; refused unread")
        del buf[:at]
        return bool(first & 0x80), op, n

    def _next_frame(self) -> tuple[bool, int, bytes]:
        while (header := self._header()) is None:
            self._fill()
        fin, op, n = header
        return fin, op, self._take(n)

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + _masked(payload, mask))

    def recv(self) -> tuple[int, bytes]:
        """-> (opcode, payload) of the next complete text (1) or binary (2) message."""
        parts, first_op, size = [], None, 0
        while True:
            fin, op, data = self._next_frame()
            if op == OP_CLOSE:
                raise WebSocketClosed("the server closed the websocket")
            if op == OP_PING:
                self.send(data, OP_PONG)
                continue
            if op == OP_PONG:
                continue
            if op not in (OP_CONT, OP_TEXT, OP_BINARY):
                raise BadAnswer(f"websocket: unknown opcode {op}")
            if (op == OP_CONT) == (first_op is None):
                raise BadAnswer("websocket: a continuation frame without a message, or a new message "
                                "inside a fragmented one")
            first_op = first_op or op
            size += len(data)
            if size > MAX_MESSAGE_BYTES:
                raise UnsafeAnswer(f"websocket: a fragmented message longer than the "
                                   f"{size_text(MAX_MESSAGE_BYTES)} cap of websocket messages")
            parts.append(data)
            if fin:
                return first_op, b"".join(parts)

    def close(self) -> None:
        try:
            self.send(b"\x03\xe8", OP_CLOSE)
        except (OSError, TimeoutError):
            pass
        self.sock.close()

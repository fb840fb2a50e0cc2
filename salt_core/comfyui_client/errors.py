"""Exit statuses, the errors a run can end with, and how untrusted server text is shown.

What each exit status means is stated once, in runner.py's docstring (which --help prints) and README.
"""
from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_UNSAFE = 0, 1, 2, 3, 4


class ClientError(Exception):
    """Base of the errors this client reports as one line (no traceback)."""


class ServerUnreachable(ClientError, ConnectionError):
    """No TCP (or TLS) connection to the server could be made."""


class ServerError(ClientError):
    """The server answered with an HTTP error; `body` holds its JSON (e.g. node_errors) when it sent JSON."""

    def __init__(self, message: str, body=None, status: int | None = None):
        super().__init__(message)
        self.body = body
        self.status = status


class BadAnswer(ClientError):
    """The server's answer is not what ComfyUI sends (not JSON, wrong shape, a redirect, a broken websocket)."""


class UnsafeAnswer(ClientError):
    """The server's answer would make the client do something unsafe (write outside --out, exceed a cap)."""


class RunTimeout(ClientError, TimeoutError):
    """The whole run's time (--timeout) is used up."""


def shown(text, limit: int = 300, keep_newlines: bool = False) -> str:
    """Untrusted text made safe to print: control characters (terminal escapes) replaced, length bounded."""
    text = text if isinstance(text, str) else repr(text)
    allowed = "\n\t" if keep_newlines else ""
    out = "".join(c if c.isprintable() or c in allowed else "\N{REPLACEMENT CHARACTER}" for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def size_text(n: int) -> str:
    """A byte count as people read it: '64 MiB', '16 GiB', '50 bytes'."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"

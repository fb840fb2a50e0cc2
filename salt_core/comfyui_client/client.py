"""HTTP to a ComfyUI server: /object_info, /prompt, /history/<id>, /view and the websocket address.

Every answer is untrusted: redirects are not followed (one clear error names where it pointed), JSON answers
are capped at MAX_JSON_BYTES, error pages are read only up to MAX_ERROR_BYTES, and every read ends at the
run's deadline (deadline.py). No proxy settings are read: the client talks to the address it is given.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import urllib.parse
import uuid

from .answers import check_history_answer, check_queued
from .deadline import IDLE_SECONDS, Deadline, connect
from .errors import BadAnswer, ServerError, ServerUnreachable, UnsafeAnswer, shown, size_text
from .websocket import WebSocket

MAX_JSON_BYTES = 64 << 20   # /object_info of a large install is a few MiB
MAX_ERROR_BYTES = 64 << 10  # of an error page, enough for its message
PIECE_BYTES = 1 << 20       # downloads are read and written in pieces of this size


def server_base(server: str) -> urllib.parse.SplitResult:
    """'127.0.0.1:8188' / 'http://host:8188/prefix' -> the split URL; ValueError says what is expected."""
    url = server if "://" in server else "http://" + server
    u = urllib.parse.urlsplit(url)
    try:
        u.port
    except ValueError:
        raise ValueError(f"--server {server!r}: the port is not a number") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"--server {server!r}: expected http://HOST:PORT or https://HOST:PORT")
    return u


class _Connection(http.client.HTTPConnection):
    """One request per connection, over a socket bounded by the run's deadline."""

    def __init__(self, url: str, deadline: Deadline, idle: float):
        u = urllib.parse.urlsplit(url)
        super().__init__(u.hostname, u.port or (443 if u.scheme == "https" else 80))
        self._url, self._deadline, self._idle = url, deadline, idle

    def connect(self):
        self.sock = connect(self._url, self._deadline, self._idle)


class _Download:
    """An open /view answer: its announced length (None if not given) and its body in pieces."""

    def __init__(self, response: http.client.HTTPResponse, what: str):
        self._response, self.what = response, what
        length = response.getheader("Content-Length")
        self.length = int(length) if length and length.strip().isdigit() else None

    def pieces(self):
        while True:
            piece = self._response.read(PIECE_BYTES)
            if not piece:
                return
            yield piece


class ComfyClient:
    def __init__(self, server: str, deadline: Deadline | None = None, idle: float = IDLE_SECONDS):
        u = server_base(server)
        self.base = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path.rstrip("/"), "", ""))
        self.deadline = deadline or Deadline(None)
        self.idle = idle
        self.client_id = uuid.uuid4().hex

    # ---- requests -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exchange(self, method: str, path: str, body: bytes | None = None):
        """-> the response of a 200 answer; errors for everything else (one line each)."""
        what = f"{method} {path.split('?', 1)[0]}"
        conn, response = _Connection(self.base, self.deadline, self.idle), None
        try:
            try:
                conn.request(method, urllib.parse.urlsplit(self.base).path + path, body=body,
                             headers={"Content-Type": "application/json"} if body is not None else {})
                response = conn.getresponse()
                self._check_status(response, what)
            except http.client.RemoteDisconnected:
                raise ServerUnreachable(f"{what}: the server closed the connection without answering") from None
            except http.client.HTTPException as e:
                raise BadAnswer(f"{what}: not an HTTP answer ({type(e).__name__}: {shown(str(e), 120)})") from None
            except TimeoutError:
                self.deadline.check()
                raise ServerUnreachable(f"{what}: no answer for {self.idle:g} s") from None
            except ConnectionError as e:
                if isinstance(e, ServerUnreachable):
                    raise
                raise ServerUnreachable(f"{what}: the connection to {self.base} broke ({e})") from None
            try:
                yield response
            except TimeoutError:
                self.deadline.check()
                raise ServerUnreachable(f"{what}: the answer stalled for {self.idle:g} s") from None
            except http.client.HTTPException as e:
                raise BadAnswer(f"{what}: broken answer ({type(e).__name__})") from None
            except ConnectionError as e:
                raise ServerUnreachable(f"{what}: the connection broke during the answer ({e})") from None
        finally:
            if response is not None:
                response.close()
            conn.close()

    def _check_status(self, response: http.client.HTTPResponse, what: str) -> None:
        if response.status == 200:
            return
        if 300 <= response.status < 400:
            where = response.getheader("Location") or "nowhere"
            raise BadAnswer(f"{what}: the server answered with a redirect ({response.status} to {shown(where, 120)}); "
                            "redirects are not followed, give --server the address ComfyUI itself listens on")
        raw = response.read(MAX_ERROR_BYTES)
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = None
        kind = response.getheader("Content-Type") or "no content type"
        detail = "" if parsed is not None else \
            f" ({shown(kind, 60)}, not JSON: {shown(raw.decode('utf-8', 'replace').strip(), 120) or 'empty'})"
        raise ServerError(f"HTTP {response.status} {shown(response.reason, 60)} from {what}{detail}", parsed,
                          response.status)

    def _json(self, method: str, path: str, data=None):
        body = json.dumps(data).encode() if data is not None else None
        what = f"{method} {path.split('?', 1)[0]}"
        with self._exchange(method, path, body) as response:
            length = response.getheader("Content-Length")
            if length and length.strip().isdigit() and int(length) > MAX_JSON_BYTES:
                raise UnsafeAnswer(f"{what}: the answer announces {int(length)} bytes, more than the "
                                   f"{size_text(MAX_JSON_BYTES)} cap of JSON answers; nothing was read")
            pieces, size = [], 0
            while size <= MAX_JSON_BYTES and (piece := response.read(PIECE_BYTES)):
                pieces.append(piece)
                size += len(piece)
            raw = b"".join(pieces)
            if size > MAX_JSON_BYTES:
                raise UnsafeAnswer(f"{what}: the answer is larger than the {size_text(MAX_JSON_BYTES)} cap "
                                   "of JSON answers")
            kind = response.getheader("Content-Type") or "no content type"
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise BadAnswer(f"{what}: expected JSON, got {shown(kind, 60)}: "
                            f"{shown(raw.decode('utf-8', 'replace').strip(), 120) or 'an empty body'}") from None

    # ---- the ComfyUI routes ---------------------------------------------------------------------

    def object_info(self) -> dict:
        info = self._json("GET", "/object_info")
        if not isinstance(info, dict):
            raise BadAnswer(f"GET /object_info: expected a JSON object of node definitions, "
                            f"got {type(info).__name__}")
        return info

    def queue(self, prompt: dict) -> dict:
        """POST /prompt -> the server's answer, which has a 'prompt_id' (checked)."""
        return check_queued(self._json("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id}))

    def history(self, prompt_id: str) -> dict:
        """The /history entry of a prompt, {} while the server has not filed it."""
        path = f"/history/{urllib.parse.quote(prompt_id, safe='')}"
        return check_history_answer(self._json("GET", path), prompt_id)

    @contextlib.contextmanager
    def view(self, entry: dict):
        """GET /view of one output file -> a _Download to read in pieces."""
        query = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                                        "type": entry.get("type", "output")})
        with self._exchange("GET", f"/view?{query}") as response:
            yield _Download(response, f"GET /view of {entry['filename']!r}")

    def websocket(self) -> WebSocket:
        ws_base = "ws" + self.base[len("http"):]
        return WebSocket(f"{ws_base}/ws?clientId={self.client_id}", self.deadline, self.idle)

"""Fake ComfyUI servers for the client's tests: a well-behaved one with hooks for misbehaving, and a raw
TCP one for servers that do not even speak HTTP properly (trickling, stalling)."""
import base64
import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

from salt_core.comfyui_client import runner

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REFUSAL = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                     "details": ""},
           "node_errors": {"3": {"class_type": "Sampler", "errors": [
               {"message": "Value not in list", "details": "mode: 'z' not in ['x', 'y']"}]}}}
DEFAULT_OUTPUTS = {"5": {"images": [{"filename": "x_00001_.mp4", "subfolder": "out", "type": "output"}],
                         "animated": [True]}}


def ws_frame(payload: bytes, opcode=0x1, fin=True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    head += bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n) if n < 65536 else \
        bytes([127]) + struct.pack("!Q", n)
    return head + payload


def ws_accept(h) -> None:
    """Answer a websocket upgrade on a BaseHTTPRequestHandler."""
    key = h.headers["Sec-WebSocket-Key"]
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
    h.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hangs up early is what several tests are about


class FakeComfy:
    """Answers /object_info, /prompt, /ws, /history and /view like ComfyUI does (scripted outcome).

    `routes` replaces answers: {("GET", "/view"): fn(handler)} (the path without its query); `ws` replaces
    what the websocket sends after the handshake: fn(handler, fake); `outputs` is the history's outputs."""

    def __init__(self, outcome="success", object_info=None, outputs=None, view_body=b"MP4 BYTES", routes=None,
                 ws=None):
        self.outcome, self.object_info = outcome, object_info or {}
        self.outputs = DEFAULT_OUTPUTS if outputs is None else outputs
        self.view_body, self.routes, self.ws = view_body, routes or {}, ws
        self.posted, self.views, self.ws_client_ids = [], [], []
        self.history_calls = 0
        self.queued, self.stop = threading.Event(), threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, code, body, ctype="application/json", headers=()):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                route = fake.routes.get(("GET", self.path.split("?", 1)[0]))
                if route:
                    return route(self)
                if self.path == "/object_info":
                    return self.reply(200, fake.object_info)
                if self.path.startswith("/ws?clientId="):
                    return fake.websocket(self)
                if self.path == "/history/p-1":
                    fake.history_calls += 1
                    if fake.outcome == "late history" and fake.history_calls < 3:
                        return self.reply(200, {})  # filed a moment after the websocket says it is done
                    return self.reply(200, {"p-1": {"outputs": fake.outputs, "status": {
                        "status_str": "success", "completed": True}}})
                if self.path.startswith("/view?"):
                    fake.views.append(self.path)
                    return self.reply(200, fake.view_body, "video/mp4")
                self.reply(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.posted.append(body)
                route = fake.routes.get(("POST", self.path))
                if route:
                    fake.queued.set()
                    return route(self)
                if fake.outcome == "refused":
                    return self.reply(400, REFUSAL)
                self.reply(200, {"prompt_id": "p-1", "number": 0, "node_errors": {}})
                fake.queued.set()

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def websocket(self, h):
        ws_accept(h)
        self.ws_client_ids.append(h.path.split("=", 1)[1])
        if self.ws:
            return self.ws(h, self)
        send = lambda msg: h.wfile.write(ws_frame(json.dumps(msg).encode()))
        send({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"}})
        self.queued.wait(10)
        send({"type": "execution_start", "data": {"prompt_id": "p-1"}})
        send({"type": "executing", "data": {"node": "3", "prompt_id": "p-1"}})
        h.wfile.write(ws_frame(b"\x00\x00\x00\x01JPEGDATA", opcode=0x2))  # a preview
        h.wfile.write(ws_frame(b"ping", opcode=0x9))
        text = json.dumps({"type": "progress", "data": {"value": 1, "max": 2, "node": "3", "prompt_id": "p-1"}})
        h.wfile.write(ws_frame(text[:10].encode(), fin=False) + ws_frame(text[10:].encode(), opcode=0x0))
        send({"type": "executing", "data": {"node": "3", "prompt_id": "other"}})
        if self.outcome == "error":
            send({"type": "execution_error", "data": {
                "prompt_id": "p-1", "node_id": "3", "node_type": "Sampler", "exception_type": "ValueError",
                "exception_message": "frames must be of the form 4k+1", "traceback": ["  File x\n"]}})
        elif self.outcome == "interrupted":
            send({"type": "execution_interrupted", "data": {"prompt_id": "p-1", "node_id": "3"}})
        else:
            send({"type": "executed", "data": {"node": "5", "prompt_id": "p-1", "output": {}}})
            send({"type": "executing", "data": {"node": None, "prompt_id": "p-1"}})
        try:
            h.rfile.read(2)  # the client's pong / close
        except OSError:
            pass
        h.close_connection = True

    def close(self):
        self.stop.set()
        self.queued.set()
        self.server.shutdown()
        self.server.server_close()


class RawServer:
    """A TCP server on 127.0.0.1 that runs behave(conn, stop) for each connection (in its own thread)."""

    def __init__(self, behave):
        self.behave, self.stop = behave, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        with conn:
            try:
                self.behave(conn, self.stop)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.sock.close()


def read_request(conn) -> bytes:
    """Read an HTTP request's head from a raw connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def trickle(conn, stop, data: bytes, every: float) -> None:
    """Send data one byte at a time, `every` seconds apart, until it is sent, the client leaves or stop."""
    for i in range(len(data)):
        if stop.wait(every):
            return
        conn.sendall(data[i:i + 1])


class Run(NamedTuple):
    status: int
    saved: list
    lines: list
    seconds: float


def run_client(server, workflow, out=".", timeout=20.0, **kw) -> Run:
    """run_workflow against a fake (closed afterwards) -> exit status, saved paths, logged lines, seconds."""
    lines = []
    start = time.monotonic()
    try:
        status, saved = runner.run_workflow(server.url, json.dumps(workflow), str(out), timeout=timeout,
                                            log=lines.append, **kw)
    finally:
        server.close()
    return Run(status, saved, lines, time.monotonic() - start)

"""Run a saved ComfyUI workflow on a running ComfyUI server, without a browser.

    python -m salt_core.comfyui_client --server http://127.0.0.1:8188 workflow.json --out videos/ \
        --set SaltSampler.seed=7 --set 'SaltTextEncode.text="a blue square moves right"'

Accepts the UI format (what "Save" writes; converted with the server's /object_info) or the API
format ("Export (API)"). Submits it (POST /prompt), follows progress over the websocket
(/ws?clientId=...), then fetches /history/<prompt_id> and downloads every output file via /view.
Exit status: 0 done; 1 the server refused the workflow or a node failed (its errors are printed);
2 bad arguments, unreadable workflow or unreachable server; 3 interrupted or timed out.

Standard library only (a small RFC 6455 websocket client is included), so it runs anywhere.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable

from .workflow import WorkflowError, apply_overrides, is_ui_workflow, load_workflow, ui_to_api

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ServerError(RuntimeError):
    """The server answered with an error; `body` holds its JSON (e.g. node_errors) when it sent one."""

    def __init__(self, message: str, body=None):
        super().__init__(message)
        self.body = body


# ---- a minimal websocket client (RFC 6455, client side) -----------------------------------------

class WebSocketClosed(ConnectionError):
    pass


class WebSocket:
    """Text/binary frames in, text frames out; answers pings; no extensions."""

    def __init__(self, url: str, timeout: float = 30.0):
        u = urllib.parse.urlsplit(url)
        secure = u.scheme in ("wss", "https")
        port = u.port or (443 if secure else 80)
        sock = socket.create_connection((u.hostname, port), timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=u.hostname)
        self.sock = sock
        self._buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        request = (f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        sock.sendall(request.encode())
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status = head.split("\r\n", 1)[0]
        if " 101 " not in status + " ":
            raise ConnectionError(f"websocket handshake refused: {status}")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head.split("\r\n")[1:] if line)}
        if headers.get("sec-websocket-accept") != accept:
            raise ConnectionError("websocket handshake: wrong Sec-WebSocket-Accept")

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)  # may time out: nothing buffered is lost
        if not chunk:
            raise WebSocketClosed("the server closed the connection")
        self._buf += chunk

    def _next_frame(self) -> tuple[int, int, bytes]:
        """-> (fin, opcode, payload) once a whole frame is buffered; partial frames stay buffered."""
        while True:
            buf = self._buf
            if len(buf) >= 2:
                n, at = buf[1] & 0x7F, 2
                if n == 126 and len(buf) >= 4:
                    n, at = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127 and len(buf) >= 10:
                    n, at = struct.unpack("!Q", buf[2:10])[0], 10
                if n < 126 or at > 2:
                    masked = buf[1] & 0x80
                    end = at + (4 if masked else 0) + n
                    if len(buf) >= end:
                        data = buf[end - n:end]
                        if masked:
                            mask = buf[at:at + 4]
                            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                        self._buf = buf[end:]
                        return buf[0] & 0x80, buf[0] & 0x0F, data
            self._fill()

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WebSocketClosed("the server closed the connection during the handshake")
            self._buf += chunk
        data, _, self._buf = self._buf.partition(marker)
        return data

    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> tuple[int, bytes]:
        """-> (opcode, payload) of the next complete text (1) or binary (2) message."""
        parts, first_op = [], None
        while True:
            fin, op, data = self._next_frame()
            if op == 0x8:
                raise WebSocketClosed("the server closed the websocket")
            if op == 0x9:
                self.send(data, 0xA)
                continue
            if op == 0xA:
                continue
            if op != 0x0:
                first_op = op
            parts.append(data)
            if fin:
                return first_op or 0x1, b"".join(parts)

    def close(self) -> None:
        try:
            self.send(b"\x03\xe8", 0x8)
        except OSError:
            pass
        self.sock.close()


# ---- the client -----------------------------------------------------------------------------------

class ComfyClient:
    def __init__(self, server: str, timeout: float = 30.0):
        if "://" not in server:
            server = "http://" + server
        self.base = server.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, data: dict | None = None) -> bytes:
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body,
                                     headers={"Content-Type": "application/json"} if body else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            raise ServerError(f"{e.code} {e.reason} from {path}", parsed) from None
        except (urllib.error.URLError, OSError) as e:
            raise ConnectionError(f"cannot reach ComfyUI at {self.base}: {getattr(e, 'reason', e)}") from None

    def get_json(self, path: str):
        return json.loads(self._request(path))

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue(self, prompt: dict) -> dict:
        return json.loads(self._request("/prompt", {"prompt": prompt, "client_id": self.client_id}))

    def history(self, prompt_id: str) -> dict:
        return self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id, {})

    def view(self, entry: dict) -> bytes:
        q = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                                    "type": entry.get("type", "output")})
        return self._request(f"/view?{q}")

    def websocket(self) -> WebSocket:
        ws_base = "ws" + self.base[4:] if self.base.startswith("http") else self.base
        return WebSocket(f"{ws_base}/ws?clientId={self.client_id}", timeout=self.timeout)


def format_node_errors(body) -> str:
    """The server's refusal ({'error': ..., 'node_errors': ...}) as readable lines."""
    if not isinstance(body, dict):
        return str(body)
    lines = []
    err = body.get("error")
    if isinstance(err, dict):
        lines.append(f"error: {err.get('message', '')} {err.get('details', '')}".rstrip())
    elif err:
        lines.append(f"error: {err}")
    for nid, info in (body.get("node_errors") or {}).items():
        for e in info.get("errors", []):
            lines.append(f"node {nid} ({info.get('class_type', '?')}): {e.get('message', '')}: "
                         f"{e.get('details', '')}".rstrip(": "))
    return "\n".join(lines) or json.dumps(body)


def _follow(ws: WebSocket, prompt_id: str, deadline: float, log: Callable[[str], None]) -> tuple[str, dict]:
    """Read websocket events for prompt_id -> ('success' | 'error' | 'interrupted', last event data)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout", {}
        ws.settimeout(min(left, 30.0))
        try:
            op, payload = ws.recv()
        except TimeoutError:
            continue
        if op != 0x1:
            continue  # binary: latent previews
        msg = json.loads(payload)
        kind, data = msg.get("type"), msg.get("data") or {}
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        if kind == "progress":
            log(f"  node {data.get('node')}: {data.get('value')}/{data.get('max')}")
        elif kind == "executing" and data.get("node") is not None:
            log(f"running node {data['node']}")
        elif kind == "execution_cached" and data.get("nodes"):
            log(f"cached nodes: {', '.join(map(str, data['nodes']))}")
        elif kind == "execution_error":
            return "error", data
        elif kind == "execution_interrupted":
            return "interrupted", data
        elif kind == "execution_success" or (kind == "executing" and data.get("node") is None
                                               and data.get("prompt_id") == prompt_id):
            return "success", data


def _poll(client: ComfyClient, prompt_id: str, deadline: float) -> tuple[str, dict]:
    while time.monotonic() < deadline:
        status = client.history(prompt_id).get("status") or {}
        if status.get("completed") or status.get("status_str") in ("success", "error"):
            if status.get("status_str") == "error":
                for name, data in status.get("messages", []):
                    if name in ("execution_error", "execution_interrupted"):
                        return ("error" if name == "execution_error" else "interrupted"), data
                return "error", {}
            return "success", {}
        time.sleep(0.5)
    return "timeout", {}


def finished_history(client: ComfyClient, prompt_id: str, timeout: float = 60.0) -> dict:
    """The /history entry of a finished prompt. The server announces the end on the websocket a moment
    before it files the history, so this waits until the entry is there."""
    deadline = time.monotonic() + timeout
    while True:
        entry = client.history(prompt_id)
        if entry:  # ComfyUI files a prompt in /history only once it has ended (success, error or interrupt)
            return entry
        if time.monotonic() > deadline:
            raise ServerError(f"no history for prompt {prompt_id} within {timeout:.0f} s")
        time.sleep(0.2)


def output_files(history_entry: dict) -> list[tuple[str, dict]]:
    """(node id, {'filename', 'subfolder', 'type'}) of every file a finished prompt produced."""
    files = []
    for nid, outputs in (history_entry.get("outputs") or {}).items():
        for items in outputs.values():
            if isinstance(items, list):
                files += [(nid, e) for e in items if isinstance(e, dict) and "filename" in e]
    return files


def run_workflow(server: str, workflow_text: str, out_dir: str = ".", overrides=(), timeout: float = 3600.0,
                 log: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Convert if needed, submit, follow, download. -> (exit status, downloaded paths)."""
    client = ComfyClient(server)
    try:
        workflow = load_workflow(workflow_text)
        prompt = ui_to_api(workflow, client.object_info()) if is_ui_workflow(workflow) else workflow
        prompt = apply_overrides(prompt, overrides)
    except WorkflowError as e:
        log(f"workflow: {e}")
        return EXIT_USAGE, []
    except (ConnectionError, ServerError) as e:
        log(str(e))
        return EXIT_USAGE, []
    ws = None
    try:
        try:
            ws = client.websocket()  # before queueing, so no event is missed
        except (OSError, ConnectionError) as e:
            log(f"no websocket ({e}); polling /history instead")
        try:
            queued = client.queue(prompt)
        except ServerError as e:
            log(f"the server refused the workflow ({e}):\n{format_node_errors(e.body)}")
            return EXIT_FAILED, []
        prompt_id = queued["prompt_id"]
        log(f"queued as {prompt_id}")
        if queued.get("node_errors"):
            log(format_node_errors({"node_errors": queued["node_errors"]}))
        deadline = time.monotonic() + timeout
        try:
            state, data = _follow(ws, prompt_id, deadline, log) if ws else _poll(client, prompt_id, deadline)
        except (OSError, ConnectionError) as e:
            log(f"websocket lost ({e}); polling /history instead")
            state, data = _poll(client, prompt_id, deadline)
    except ConnectionError as e:
        log(str(e))
        return EXIT_USAGE, []
    finally:
        if ws is not None:
            ws.close()
    if state == "error":
        log(f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
            f"{data.get('exception_type', '')}: {data.get('exception_message', '')}".rstrip())
        for line in data.get("traceback") or []:
            log("  " + line.rstrip())
        return EXIT_FAILED, []
    if state in ("interrupted", "timeout"):
        log(f"the run was {'interrupted' if state == 'interrupted' else 'not finished within the timeout'}")
        return EXIT_STOPPED, []
    saved = []
    try:
        for nid, entry in output_files(finished_history(client, prompt_id)):
            folder = os.path.join(out_dir, entry.get("subfolder") or "")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, os.path.basename(entry["filename"]))
            with open(path, "wb") as f:
                f.write(client.view(entry))
            saved.append(path)
            log(f"saved {path} (node {nid})")
    except (ConnectionError, ServerError, OSError) as e:
        log(f"the run finished but its outputs could not be downloaded: {e}")
        return EXIT_FAILED, saved
    return EXIT_OK, saved


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m salt_core.comfyui_client", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", help="workflow JSON, UI format (Save) or API format (Export (API))")
    p.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI address (default %(default)s)")
    p.add_argument("--out", default=".", help="folder for the downloaded outputs (default: current folder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input; NODE is a node id, title or type; VALUE is JSON or a string "
                        "(repeatable)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default 3600)")
    p.add_argument("--print-api", action="store_true",
                   help="print the API-format prompt (after conversion and --set) and exit without running")
    args = p.parse_args(argv)
    try:
        with open(args.workflow, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"cannot read {args.workflow}: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.print_api:
        try:
            wf = load_workflow(text)
            prompt = ui_to_api(wf, ComfyClient(args.server).object_info()) if is_ui_workflow(wf) else wf
            print(json.dumps(apply_overrides(prompt, args.overrides), indent=2))
            return EXIT_OK
        except (WorkflowError, ConnectionError, ServerError) as e:
            print(e, file=sys.stderr)
            return EXIT_USAGE
    status, _ = run_workflow(args.server, text, args.out, args.overrides, args.timeout,
                             log=lambda m: print(m, flush=True))
    return status


if __name__ == "__main__":
    sys.exit(main())

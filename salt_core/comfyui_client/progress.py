"""Following a queued prompt to its end: websocket events, or polling /history where there is no websocket."""
from __future__ import annotations

import time
from collections.abc import Callable

from .answers import parse_event, run_status
from .client import ComfyClient
from .errors import BadAnswer, RunTimeout, shown
from .websocket import OP_TEXT, WebSocket

POLL_SECONDS = 0.5


def follow(ws: WebSocket, prompt_id: str, log: Callable[[str], None]) -> tuple[str, dict]:
    """Read websocket events for prompt_id -> ('success' | 'error' | 'interrupted', the last event's data).

    Ends with RunTimeout at the run's deadline; a silent stretch (a long node) is waited through."""
    while True:
        try:
            op, payload = ws.recv()
        except RunTimeout:
            raise
        except TimeoutError:
            continue
        if op != OP_TEXT:
            continue  # binary: latent previews
        kind, data = parse_event(payload)
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        if kind == "progress":
            log(f"  node {shown(data.get('node'), 40)}: {shown(data.get('value'), 20)}/{shown(data.get('max'), 20)}")
        elif kind == "executing" and data.get("node") is not None:
            log(f"running node {shown(data['node'], 40)}")
        elif kind == "execution_cached" and isinstance(data.get("nodes"), list) and data["nodes"]:
            log(f"cached nodes: {shown(', '.join(map(str, data['nodes'])), 200)}")
        elif kind == "execution_error":
            return "error", data
        elif kind == "execution_interrupted":
            return "interrupted", data
        elif kind == "execution_success" or (kind == "executing" and data.get("node") is None
                                               and data.get("prompt_id") == prompt_id):
            return "success", data


def poll(client: ComfyClient, prompt_id: str) -> tuple[str, dict]:
    """Like follow(), from /history every POLL_SECONDS (no progress lines)."""
    while True:
        ended = run_status(client.history(prompt_id))
        if ended:
            return ended
        client.deadline.sleep(POLL_SECONDS)


def finished_history(client: ComfyClient, prompt_id: str, timeout: float = 60.0) -> dict:
    """The /history entry of a finished prompt. The server announces the end on the websocket a moment
    before it files the history, so this waits (at most `timeout` s, and never past the run's deadline)."""
    give_up = time.monotonic() + timeout
    while True:
        entry = client.history(prompt_id)
        if entry:  # ComfyUI files a prompt in /history only once it has ended (success, error or interrupt)
            return entry
        if time.monotonic() > give_up:
            raise BadAnswer(f"the server said prompt {shown(prompt_id, 60)} ended but filed no history for it "
                            f"within {timeout:g} s")
        client.deadline.sleep(0.2)

"""The shapes of ComfyUI's answers, checked before use, and the server's refusals as readable lines.

Shapes (ComfyUI 0.3.x):
    POST /prompt     -> {"prompt_id": str, "number": int, "node_errors": {...}}
    GET /history/id  -> {id: {"outputs": {node_id: {key: [item, ...]}}, "status": {...}, ...}} or {}
                        an item with a "filename" is a file: {"filename", "subfolder", "type"}
    websocket text   -> {"type": str, "data": {...}}
Anything else is a BadAnswer naming what was expected and what came.
"""
from __future__ import annotations

import json

from .errors import BadAnswer, shown


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value),
                                                                                      type(value).__name__)


def check_queued(answer) -> dict:
    if not isinstance(answer, dict):
        raise BadAnswer(f"POST /prompt: expected a JSON object with a 'prompt_id', got {_kind(answer)}")
    prompt_id = answer.get("prompt_id")
    if not isinstance(prompt_id, str) or not 0 < len(prompt_id) <= 256:
        got = "none" if prompt_id is None else f"a {len(prompt_id)}-character string" \
            if isinstance(prompt_id, str) else _kind(prompt_id)
        raise BadAnswer(f"POST /prompt: expected a 'prompt_id' string (1 to 256 characters) in the answer, got "
                        f"{got} (keys: {shown(', '.join(map(str, answer)) or 'none', 120)})")
    return answer


def check_history_answer(answer, prompt_id: str) -> dict:
    if not isinstance(answer, dict):
        raise BadAnswer(f"GET /history/{shown(prompt_id, 60)}: expected a JSON object, got {_kind(answer)}")
    entry = answer.get(prompt_id)
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise BadAnswer(f"GET /history/{shown(prompt_id, 60)}: expected the prompt's entry to be an object, "
                        f"got {_kind(entry)}")
    return entry


def output_files(history_entry: dict) -> list[tuple[str, dict]]:
    """(node id, {'filename', 'subfolder', 'type'}) of every file a finished prompt produced, each once.

    Lists of other things (e.g. "animated": [true], "text": [...]) are not files and are skipped; a file
    item whose fields are not strings, or outputs that are not objects, are a BadAnswer."""
    outputs = history_entry.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise BadAnswer(f"history: expected 'outputs' to be an object of nodes, got {_kind(outputs)}")
    files, seen = [], set()
    for nid, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            raise BadAnswer(f"history: expected the outputs of node {shown(nid, 40)} to be an object, "
                            f"got {_kind(node_outputs)}")
        for key, items in node_outputs.items():
            if not isinstance(items, list):
                continue
            for k, item in enumerate(items):
                if not (isinstance(item, dict) and "filename" in item):
                    continue
                entry = {"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                         "type": item.get("type", "output")}
                bad = [f for f, v in entry.items() if not isinstance(v, str)]
                if bad:
                    raise BadAnswer(f"history: outputs[{shown(nid, 40)}][{shown(key, 40)}][{k}]: expected "
                                    f"strings for {', '.join(bad)}, got "
                                    + ", ".join(_kind(entry[f]) for f in bad))
                ident = (entry["type"], entry["subfolder"], entry["filename"])
                if ident not in seen:
                    seen.add(ident)
                    files.append((str(nid), entry))
    return files


def run_status(history_entry: dict) -> tuple[str, dict] | None:
    """('success' | 'error' | 'interrupted', event data) once the entry says the run ended, else None."""
    status = history_entry.get("status")
    if not isinstance(status, dict):
        return None
    if not (status.get("completed") is True or status.get("status_str") in ("success", "error")):
        return None
    if status.get("status_str") != "error":
        return "success", {}
    messages = status.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict):
            if message[0] == "execution_error":
                return "error", message[1]
            if message[0] == "execution_interrupted":
                return "interrupted", message[1]
    return "error", {}


def parse_event(payload: bytes) -> tuple[str, dict]:
    """A websocket text message -> (type, data); data is {} unless the server sent an object."""
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError):
        raise BadAnswer(f"websocket: expected a JSON message, got {shown(payload.decode('utf-8', 'replace'), 80)}"
                        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadAnswer(f"websocket: expected a JSON object with a 'type', got {_kind(message)}")
    data = message.get("data")
    return message["type"], data if isinstance(data, dict) else {}


def format_node_errors(body) -> str:
    """The server's refusal ({'error': ..., 'node_errors': ...}) as readable lines."""
    if not isinstance(body, dict):
        return shown(body if isinstance(body, str) else json.dumps(body), 500)
    lines = []
    err = body.get("error")
    if isinstance(err, dict):
        lines.append(f"error: {shown(err.get('message', ''))} {shown(err.get('details', ''))}".rstrip())
    elif err:
        lines.append(f"error: {shown(err)}")
    node_errors = body.get("node_errors")
    for nid, info in (node_errors.items() if isinstance(node_errors, dict) else ()):
        info = info if isinstance(info, dict) else {}
        errors = info.get("errors")
        for e in errors if isinstance(errors, list) else []:
            e = e if isinstance(e, dict) else {"message": e}
            lines.append(f"node {shown(nid, 40)} ({shown(info.get('class_type', '?'), 80)}): "
                         f"{shown(e.get('message', ''))}: {shown(e.get('details', ''))}".rstrip(": "))
    return "\n".join(lines) or shown(json.dumps(body), 500)

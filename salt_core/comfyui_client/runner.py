"""Run a saved ComfyUI workflow on a running ComfyUI server, without a browser.

    python -m salt_core.comfyui_client --server http://127.0.0.1:8188 workflow.json --out videos/ \
        --set SaltSampler.seed=7 --set 'SaltTextEncode.text="a blue square moves right"'

Accepts the UI format (what "Save" writes; converted with the server's /object_info) or the API
format ("Export (API)"). Submits it (POST /prompt), follows progress over the websocket
(/ws?clientId=...), then fetches /history/<prompt_id> and downloads every output file via /view.

Safety: outputs are written only inside --out (downloads.py has the rules), never over an existing file,
atomically, at most --max-file-mb each; --timeout bounds the whole run, every read included.

Exit status: 0 done; 1 failed after queueing (the server refused the workflow, a node failed, the server
broke off or answered with something that is not a ComfyUI answer); 2 nothing was queued: bad arguments,
an unreadable workflow, or no usable server (unreachable, or not answering like ComfyUI); 3 interrupted
or not finished within --timeout; 4 unsafe answer (an output path leaving --out, an answer over its size
cap): nothing was written for it.

Standard library only (a small RFC 6455 websocket client is included), so it runs anywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from .answers import format_node_errors, output_files
from .client import ComfyClient
from .deadline import Deadline
from .downloads import MAX_DOWNLOAD_BYTES, safe_target, write_download
from .errors import (EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_UNSAFE, EXIT_USAGE, BadAnswer, ClientError,
                     RunTimeout, ServerError, ServerUnreachable, UnsafeAnswer, shown)
from .overrides import apply_overrides
from .progress import finished_history, follow, poll
from .websocket import WebSocketClosed
from .workflow import WorkflowError, is_ui_workflow, load_workflow, ui_to_api

__all__ = ["ComfyClient", "finished_history", "format_node_errors", "main", "output_files", "run_workflow"]
HISTORY_WAIT_SECONDS = 60.0


def _usage_status(e: ClientError) -> int:
    return EXIT_UNSAFE if isinstance(e, UnsafeAnswer) else EXIT_USAGE


def _prepared(client: ComfyClient, text: str, overrides, offline: bool = False) -> dict:
    """The API prompt to send: converted with the server's /object_info if it is a UI workflow, --set applied.

    An API file needs the server only for a --set of an input the file leaves out; `offline` lets that check
    fall back to the file's own inputs when there is no server."""
    workflow = load_workflow(text)
    if is_ui_workflow(workflow):
        info = client.object_info()
        return apply_overrides(ui_to_api(workflow, info), overrides, info)
    return apply_overrides(workflow, overrides, (lambda: _definitions_if_reachable(client)) if offline
                           else client.object_info)


def _failure(state: str, data: dict, log: Callable[[str], None]) -> int:
    if state == "error":
        log(f"node {shown(data.get('node_id'), 40)} ({shown(data.get('node_type'), 80)}) failed: "
            f"{shown(data.get('exception_type', ''), 80)}: {shown(data.get('exception_message', ''), 2000, True)}"
            .rstrip(": "))
        trace = data.get("traceback")
        for line in trace[:200] if isinstance(trace, list) else []:
            log("  " + shown(line, 500, True).rstrip())
        return EXIT_FAILED
    log("the run was interrupted")
    return EXIT_STOPPED


def _download_all(client: ComfyClient, prompt_id: str, out_dir: str, max_file_bytes: int,
                  log: Callable[[str], None]) -> tuple[int, list[str]]:
    entry = finished_history(client, prompt_id, min(HISTORY_WAIT_SECONDS, max(client.deadline.left(), 0.0)))
    saved, refused, failed = [], 0, 0
    for nid, item in output_files(entry):
        try:
            target = safe_target(out_dir, item)
            with client.view(item) as download:
                path = write_download(target, download, max_file_bytes)
        except RunTimeout:
            raise
        except UnsafeAnswer as e:
            log(f"refused an output of node {shown(nid, 40)}: {e}; nothing was written for it")
            refused += 1
            continue
        except (ServerError, BadAnswer, ServerUnreachable, OSError) as e:
            log(f"output {shown(item['filename'], 80)} of node {shown(nid, 40)} could not be downloaded: {e}")
            failed += 1
            continue
        renamed = "" if path == target else f" ({os.path.basename(target)} existed and was kept)"
        saved.append(path)
        log(f"saved {path} (node {shown(nid, 40)}){renamed}")
    if refused or failed:
        log(f"{len(saved)} outputs saved, {refused} refused as unsafe, {failed} not downloaded")
    return (EXIT_UNSAFE if refused else EXIT_FAILED if failed else EXIT_OK), saved


def _run(client: ComfyClient, text: str, out_dir: str, overrides, max_file_bytes: int,
         log: Callable[[str], None]) -> tuple[int, list[str]]:
    try:
        prompt = _prepared(client, text, overrides)
    except WorkflowError as e:
        log(f"workflow: {e}")
        return EXIT_USAGE, []
    except (ServerUnreachable, ServerError, BadAnswer, UnsafeAnswer) as e:
        log(str(e))
        return _usage_status(e), []
    ws = None
    try:
        try:
            ws = client.websocket()  # before queueing, so no event is missed
        except ServerUnreachable as e:
            log(str(e))
            return EXIT_USAGE, []
        except RunTimeout:
            raise
        except (ServerError, BadAnswer, OSError) as e:
            log(f"no websocket ({e}); polling /history instead")
        try:
            queued = client.queue(prompt)
        except ServerError as e:
            details = f":\n{format_node_errors(e.body)}" if isinstance(e.body, dict) else ""
            log(f"the server refused the workflow: {e}{details}")
            return EXIT_FAILED, []
        except ServerUnreachable as e:
            log(str(e))
            return EXIT_USAGE, []
        prompt_id = queued["prompt_id"]
        log(f"queued as {shown(prompt_id, 80)}")
        if queued.get("node_errors"):
            log(format_node_errors({"node_errors": queued["node_errors"]}))
        if ws is not None:
            try:
                state, data = follow(ws, prompt_id, log)
            except RunTimeout:
                raise
            except (WebSocketClosed, ServerUnreachable, OSError) as e:
                log(f"websocket lost ({e}); polling /history instead")
                state, data = poll(client, prompt_id)
        else:
            state, data = poll(client, prompt_id)
    except UnsafeAnswer as e:
        log(str(e))
        return EXIT_UNSAFE, []
    except (ServerError, BadAnswer, ServerUnreachable) as e:
        log(str(e))
        return EXIT_FAILED, []
    finally:
        if ws is not None:
            ws.close()
    if state != "success":
        return _failure(state, data, log), []
    try:
        return _download_all(client, prompt_id, out_dir, max_file_bytes, log)
    except (ServerError, BadAnswer, ServerUnreachable) as e:
        log(f"the run finished but its outputs could not be listed: {e}")
        return EXIT_FAILED, []


def run_workflow(server: str, workflow_text: str, out_dir: str = ".", overrides=(), timeout: float = 3600.0,
                 log: Callable[[str], None] = print, max_file_bytes: int = MAX_DOWNLOAD_BYTES) -> tuple[int, list[str]]:
    """Convert if needed, submit, follow, download, all within `timeout` seconds -> (exit status, saved paths)."""
    try:
        client = ComfyClient(server, Deadline(timeout))
    except ValueError as e:
        log(str(e))
        return EXIT_USAGE, []
    try:
        return _run(client, workflow_text, out_dir, overrides, max_file_bytes, log)
    except RunTimeout as e:
        log(f"the run was {e}")
        return EXIT_STOPPED, []
    except KeyboardInterrupt:
        log("interrupted (the server may still be running the prompt)")
        return EXIT_STOPPED, []


def _offline_hint(workflow_path: str) -> str:
    copy = os.path.join(os.path.dirname(workflow_path), "api", os.path.basename(workflow_path))
    where = f"{copy} is this workflow's API copy" if os.path.isfile(copy) else \
        "the API copies in example_workflows/api/ are, and so is a file from Workflow > Export (API)"
    return ("converting a UI-format workflow needs the server's node definitions (GET /object_info); "
            f"API-format files work offline: {where}")


def print_api(server: str, workflow_path: str, text: str, overrides, timeout: float = 60.0) -> int:
    """--print-api: the prompt that would be sent, on stdout. An API file needs no server."""
    try:
        prompt = _prepared(ComfyClient(server, Deadline(timeout)), text, overrides, offline=True)
    except ServerUnreachable as e:
        print(f"{e}\n{_offline_hint(workflow_path)}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, ClientError) as e:  # WorkflowError is a ValueError
        print(e, file=sys.stderr)
        return _usage_status(e) if isinstance(e, ClientError) else EXIT_USAGE
    print(json.dumps(prompt, indent=2))
    return EXIT_OK


def _definitions_if_reachable(client: ComfyClient) -> dict | None:
    try:
        return client.object_info()
    except ClientError:
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m salt_core.comfyui_client", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", help="workflow JSON, UI format (Save) or API format (Export (API))")
    p.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI address (default %(default)s)")
    p.add_argument("--out", default=".", help="folder for the downloaded outputs (default: current folder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input; NODE is a node id, title or type; VALUE is JSON or a string "
                        "(repeatable)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds the whole run may take, downloads included (default 3600)")
    p.add_argument("--max-file-mb", type=float, default=MAX_DOWNLOAD_BYTES / 2**20,
                   help="refuse a downloaded file larger than this (default %(default)g MiB)")
    p.add_argument("--print-api", action="store_true",
                   help="print the API-format prompt (after conversion and --set) and exit without running")
    args = p.parse_args(argv)
    if not args.timeout > 0 or not args.max_file_mb > 0:
        p.error("--timeout and --max-file-mb must be positive")
    try:
        with open(args.workflow, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"cannot read {args.workflow}: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.print_api:
        return print_api(args.server, args.workflow, text, args.overrides, args.timeout)
    status, _ = run_workflow(args.server, text, args.out, args.overrides, args.timeout,
                             log=lambda m: print(m, flush=True), max_file_bytes=int(args.max_file_mb * 2**20))
    return status


if __name__ == "__main__":
    sys.exit(main())

"""ComfyUI workflow files: UI format (what the frontend saves) -> API format (what POST /prompt takes).

The ComfyUI server has no such converter (the frontend does it when you press Queue), so a headless
client needs one. It needs the server's node definitions (`GET /object_info`) to know which inputs
are widgets and in which order their values are stored in `widgets_values`.

Handled: widgets and their values (widgets.py says which inputs are widgets, by the frontend's rule),
widgets converted to inputs (linked or not), links,
muted nodes (mode 2: left out), bypassed nodes (mode 4: inputs passed through by type), Reroute,
PrimitiveNode (its value is inlined), Note / MarkdownNote (ignored). Not handled: subgraphs and
group nodes (a clear error says to export the API format from the frontend instead).

No ComfyUI import here; plain data in, plain data out.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .widgets import widget_values

VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASS = 2, 4


class WorkflowError(ValueError):
    """A workflow that cannot be converted or run; the message says which node and why."""


# ---- format detection ---------------------------------------------------------------------------

def is_ui_workflow(data: Any) -> bool:
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


def is_api_prompt(data: Any) -> bool:
    return isinstance(data, Mapping) and bool(data) and all(
        isinstance(v, Mapping) and "class_type" in v for v in data.values())


def load_workflow(text: str) -> dict:
    """Parse a workflow file's text; an API prompt may be wrapped as {"prompt": {...}}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkflowError(f"not a JSON file: {e}") from None
    if isinstance(data, Mapping) and is_api_prompt(data.get("prompt")):
        data = data["prompt"]
    if not (is_ui_workflow(data) or is_api_prompt(data)):
        raise WorkflowError("neither a UI workflow (with 'nodes' and 'links') nor an API prompt "
                            "({id: {'class_type', 'inputs'}})")
    return dict(data)


# ---- the graph ----------------------------------------------------------------------------------

def _links(workflow: Mapping) -> dict[int, tuple[int, int, int, int, str]]:
    """link id -> (origin node, origin slot, target node, target slot, type); arrays or objects."""
    out = {}
    for link in workflow.get("links") or []:
        if isinstance(link, Mapping):
            out[int(link["id"])] = (int(link["origin_id"]), int(link["origin_slot"]), int(link["target_id"]),
                                    int(link["target_slot"]), link.get("type", "*"))
        elif link:
            lid, oid, oslot, tid, tslot, ltype = (list(link) + [None] * 6)[:6]
            out[int(lid)] = (int(oid), int(oslot), int(tid), int(tslot), ltype or "*")
    return out


class _Graph:
    def __init__(self, workflow: Mapping, object_info: Mapping):
        if (workflow.get("definitions") or {}).get("subgraphs"):
            raise WorkflowError("this workflow contains subgraphs, which this converter does not support; "
                                "export it with the ComfyUI frontend (Workflow > Export (API)) and run that file")
        if (workflow.get("extra") or {}).get("groupNodes"):
            raise WorkflowError("this workflow contains group nodes, which this converter does not support; "
                                "export it with the ComfyUI frontend (Workflow > Export (API)) and run that file")
        try:
            self.nodes = {int(n["id"]): n for n in workflow["nodes"]}
            self.links = _links(workflow)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise WorkflowError(f"malformed 'nodes' or 'links' ({type(e).__name__}: {e})") from None
        self.info = object_info

    def label(self, node_id: int) -> str:
        n = self.nodes[node_id]
        return f"node {node_id} ({n.get('title') or n.get('type')})"

    def upstream(self, link_id: int | None, seen: frozenset = frozenset()):
        """Follow a link through Reroute / bypassed nodes -> ('link', [node, slot]) | ('value', v) | None."""
        if link_id is None or int(link_id) not in self.links:
            return None
        oid, oslot, _, _, ltype = self.links[int(link_id)]
        if oid in seen:
            raise WorkflowError(f"a cycle of Reroute / bypassed nodes passes through node {oid}")
        node = self.nodes.get(oid)
        if node is None:
            raise WorkflowError(f"link {link_id} comes from node {oid}, which is not in the workflow")
        mode = node.get("mode", 0)
        kind = node.get("type")
        if mode == MODE_MUTED:
            return None
        if kind == "Reroute":
            ins = node.get("inputs") or []
            return self.upstream(ins[0].get("link") if ins else None, seen | {oid})
        if kind == "PrimitiveNode":
            values = node.get("widgets_values") or []
            if not values:
                raise WorkflowError(f"{self.label(oid)} has no value")
            return ("value", values[0])
        if mode == MODE_BYPASS:
            return self.upstream(self._bypass_input(node, oslot, ltype), seen | {oid})
        return ("link", [str(oid), oslot])

    def _bypass_input(self, node: Mapping, slot: int, ltype: str) -> int | None:
        """The input a bypassed node passes to output `slot`: same index and type first, else the first of that type."""
        outputs = node.get("outputs") or []
        want = (outputs[slot].get("type") if slot < len(outputs) else None) or ltype
        ins = [i for i in (node.get("inputs") or []) if i.get("link") is not None]
        same = [i for i in ins if i.get("type") == want]
        for i in same:
            if (node.get("inputs") or []).index(i) == slot:
                return i["link"]
        return same[0]["link"] if same else None


def _api_node(g: _Graph, node: Mapping, node_def: Mapping) -> dict:
    kind = node.get("type")
    inputs = widget_values(node, node_def)
    for slot in node.get("inputs") or []:
        if slot.get("link") is None:
            continue
        widget = slot.get("widget")
        name = (widget.get("name") if isinstance(widget, Mapping) else None) or slot.get("name")
        source = g.upstream(slot["link"])
        if source is not None:  # None: fed by a muted node -> a widget keeps its own value
            inputs[name] = source[1]
    title = node.get("title") or node_def.get("display_name") or kind
    return {"inputs": inputs, "class_type": kind, "_meta": {"title": title}}


def ui_to_api(workflow: Mapping, object_info: Mapping) -> dict[str, dict]:
    """Convert a UI-format workflow to an API prompt, using the server's /object_info."""
    if not is_ui_workflow(workflow):
        raise WorkflowError("not a UI workflow: it needs 'nodes' and 'links'")
    g = _Graph(workflow, object_info)
    prompt: dict[str, dict] = {}
    for node_id in sorted(g.nodes):
        node = g.nodes[node_id]
        kind = node.get("type")
        if node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS) or kind in VIRTUAL_NODES:
            continue
        node_def = object_info.get(kind)
        if node_def is None:
            raise WorkflowError(f"{g.label(node_id)}: node type {kind!r} is not available on the server "
                                "(a custom node pack is missing or failed to import)")
        if not isinstance(node_def, Mapping):
            raise WorkflowError(f"{g.label(node_id)}: the server's definition of {kind!r} is not an object")
        try:
            prompt[str(node_id)] = _api_node(g, node, node_def)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise WorkflowError(f"{g.label(node_id)}: malformed node ({type(e).__name__}: {e})") from None
    if not prompt:
        raise WorkflowError("the workflow has no runnable nodes")
    return prompt

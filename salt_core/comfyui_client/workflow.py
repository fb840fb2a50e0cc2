"""ComfyUI workflow files: UI format (what the frontend saves) -> API format (what POST /prompt takes).

The ComfyUI server has no such converter (the frontend does it when you press Queue), so a headless
client needs one. It needs the server's node definitions (`GET /object_info`) to know which inputs
are widgets and in which order their values are stored in `widgets_values`.

Handled: widget order from the input spec, the extra `control_after_generate` value that follows a
seed widget, the extra value of upload widgets, widgets converted to inputs (linked or not), links,
muted nodes (mode 2: left out), bypassed nodes (mode 4: inputs passed through by type), Reroute,
PrimitiveNode (its value is inlined), Note / MarkdownNote (ignored). Not handled: subgraphs and
group nodes (a clear error says to export the API format from the frontend instead).

No ComfyUI import here; plain data in, plain data out.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
SEED_NAMES = {"seed", "noise_seed"}
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


# ---- input specs --------------------------------------------------------------------------------

def _spec_type(spec) -> tuple[str, dict]:
    """An input spec ['INT', {...}] / [['a', 'b'], {...}] / ['COMBO', {'options': ...}] -> (type, options)."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return "*", {}
    kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {})
    if isinstance(kind, (list, tuple)):
        return "COMBO", dict(opts)
    return str(kind), dict(opts)


def widget_inputs(node_def: Mapping) -> list[tuple[str, str, dict]]:
    """(name, type, options) of the inputs the frontend shows as widgets, in widgets_values order."""
    inputs = node_def.get("input", {})
    order = node_def.get("input_order") or {}
    out = []
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name in order.get(section) or list(specs):
            if name not in specs:
                continue
            kind, opts = _spec_type(specs[name])
            if kind in WIDGET_TYPES and not opts.get("forceInput"):
                out.append((name, kind, opts))
    return out


def _has_control(name: str, kind: str, opts: Mapping) -> bool:
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return kind == "INT" and name in SEED_NAMES


def _is_control_value(value, name: str, kind: str, opts: Mapping, following) -> bool:
    """Is `value` the frontend-only control_after_generate value that follows widget `name`?

    Decided by the value as much as by the spec: saved workflows carry one after seed widgets even where
    the spec says otherwise, and very old ones stored a boolean there."""
    if kind not in ("INT", "FLOAT", "COMBO"):
        return False
    declared = _has_control(name, kind, opts)
    if isinstance(value, bool):
        return (declared or name in SEED_NAMES) and (following is None or following[1] != "BOOLEAN")
    if value not in CONTROL_VALUES:
        return False
    if following is None or following[1] in ("INT", "FLOAT", "BOOLEAN"):
        return True
    nxt_kind, nxt_opts = following[1], following[2]
    could_be_next = nxt_kind == "STRING" or value in (nxt_opts.get("options") or [])
    return declared or name in SEED_NAMES or not could_be_next


def _default_value(kind: str, opts: Mapping):
    if "default" in opts:
        return opts["default"]
    if kind == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def widget_values(node: Mapping, node_def: Mapping) -> dict[str, Any]:
    """Map a UI node's widgets_values onto input names, skipping the frontend-only extra values.

    Widgets without a stored value get their default, as the frontend gives them when it loads the node."""
    values = node.get("widgets_values")
    specs = widget_inputs(node_def)
    if isinstance(values, Mapping):
        out = {name: values[name] for name, _, _ in specs if name in values}
    else:
        values, out, i = list(values or []), {}, 0
        for k, (name, kind, opts) in enumerate(specs):
            if i >= len(values):
                break
            out[name] = values[i]
            i += 1
            following = specs[k + 1] if k + 1 < len(specs) else None
            if i < len(values) and _is_control_value(values[i], name, kind, opts, following) or i < len(values) and any(opts.get(f) for f in UPLOAD_FLAGS) and values[i] in ("image", "video",
                                                                                              "audio", None):
                i += 1
    required = set((node_def.get("input") or {}).get("required") or {})
    for name, kind, opts in specs:
        if name not in out and name in required:
            default = _default_value(kind, opts)
            if default is not None:
                out[name] = default
    return out


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
        self.nodes = {int(n["id"]): n for n in workflow["nodes"]}
        self.links = _links(workflow)
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
        prompt[str(node_id)] = {"inputs": inputs, "class_type": kind, "_meta": {"title": title}}
    if not prompt:
        raise WorkflowError("the workflow has no runnable nodes")
    return prompt


# ---- overrides ----------------------------------------------------------------------------------

def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def find_node(prompt: Mapping[str, Mapping], selector: str) -> str:
    """A node id, a node title or a class_type (when unique) -> the node id."""
    if selector in prompt:
        return selector
    for key in ("title", "class_type"):
        hits = [nid for nid, n in prompt.items()
                if (n.get("_meta", {}).get("title") if key == "title" else n.get("class_type")) == selector]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise WorkflowError(f"{selector!r} matches nodes {hits}; use a node id")
    raise WorkflowError(f"no node with id, title or type {selector!r}; nodes: "
                        + ", ".join(f"{nid} {n.get('class_type')}" for nid, n in prompt.items()))


def apply_overrides(prompt: dict, assignments: Iterable[str]) -> dict:
    """['12.seed=5', 'SaltSampler.frames=33', 'Prompt.text="a cat"'] -> prompt with those inputs set.

    Values are JSON when they parse as JSON, else strings."""
    for item in assignments:
        target, sep, value = item.partition("=")
        node_sel, dot, name = target.rpartition(".")
        if not sep or not dot or not node_sel or not name:
            raise WorkflowError(f"--set {item!r}: expected NODE.INPUT=VALUE (NODE = id, title or type)")
        nid = find_node(prompt, node_sel)
        prompt[nid].setdefault("inputs", {})[name] = _parse_value(value)
    return prompt

"""--set NODE.INPUT=VALUE: change one input of an API prompt, with errors that list what exists.

NODE is a node id, a node title or a class_type (title and type when unique). INPUT must be an input the
node has in the prompt or, when the server's node definitions are at hand, one its definition declares
(an API file leaves unlinked optional inputs out). VALUE is JSON when it parses as JSON, else a string.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping

from .widgets import declared_inputs
from .workflow import WorkflowError

Definitions = Mapping | Callable[[], Mapping | None] | None


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _describe(nid: str, node: Mapping) -> str:
    title = (node.get("_meta") or {}).get("title")
    kind = node.get("class_type")
    return f"{nid} {title!r} ({kind})" if title and title != kind else f"{nid} ({kind})"


def find_node(prompt: Mapping[str, Mapping], selector: str) -> str:
    """A node id, a node title or a class_type (when unique) -> the node id."""
    if selector in prompt:
        return selector
    for key in ("title", "class_type"):
        hits = [nid for nid, n in prompt.items()
                if ((n.get("_meta") or {}).get("title") if key == "title" else n.get("class_type")) == selector]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise WorkflowError(f"{selector!r} matches several nodes: "
                                + ", ".join(_describe(nid, prompt[nid]) for nid in hits) + "; use a node id")
    raise WorkflowError(f"no node with id, title or type {selector!r}; the nodes are: "
                        + ", ".join(_describe(nid, n) for nid, n in prompt.items()))


def node_inputs(node: Mapping, definitions: Mapping | None) -> list[str]:
    """The inputs a node may be given: those its definition declares (in its order), then any other the
    prompt has."""
    node_def = (definitions or {}).get(node.get("class_type"))
    names = [name for name, _ in declared_inputs(node_def)] if isinstance(node_def, Mapping) else []
    return names + [name for name in node.get("inputs") or {} if name not in names]


def apply_overrides(prompt: dict, assignments: Iterable[str], definitions: Definitions = None) -> dict:
    """['12.seed=5', 'SaltSampler.frames=33', 'Prompt.text="a cat"'] -> prompt with those inputs set.

    `definitions` is the server's /object_info, or a function that fetches it (called only when an input is
    not in the prompt; it may return None when there is no server)."""
    for item in assignments:
        target, sep, value = item.partition("=")
        node_sel, dot, name = target.rpartition(".")
        if not sep or not dot or not node_sel or not name:
            raise WorkflowError(f"--set {item!r}: expected NODE.INPUT=VALUE (NODE = id, title or type)")
        nid = find_node(prompt, node_sel)
        node = prompt[nid]
        if name not in (node.get("inputs") or {}):
            if callable(definitions):
                definitions = definitions()
            known = node_inputs(node, definitions)
            if name not in known:
                unchecked = "" if isinstance((definitions or {}).get(node.get("class_type")), Mapping) else (
                    "; inputs the file leaves out can only be checked against a running server's node definitions")
                raise WorkflowError(f"--set {item!r}: node {_describe(nid, node)} has no input {name!r}; its inputs: "
                                    f"{', '.join(known) or 'none'}{unchecked}")
        node.setdefault("inputs", {})[name] = _parse_value(value)
    return prompt

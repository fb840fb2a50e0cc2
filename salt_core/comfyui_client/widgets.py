"""Which inputs of a node are widgets, and which of a UI node's `widgets_values` belong to which input.

The rule is the frontend's: an input gets a widget when the frontend has a widget for its type, looked up
as the input's "widgetType" option if the server declares one (ComfyUI's typed inputs do, e.g. a
multi-type input whose widget is an INT), else its declared type, with a list of choices meaning COMBO;
an input with "forceInput" never does. The types the frontend has widgets for are FRONTEND_WIDGET_TYPES:
the core widgets of ComfyUI_frontend 1.27 (shipped with ComfyUI 0.3.64) and those of its bundled
extensions (audio upload / recording, webcam, 3-D viewers). A custom node pack's own JavaScript can add
more; the saved file shows those too: the frontend gives each widget input a socket entry with a
"widget" field, so an input the saved node marks that way is a widget whatever its type.

`widgets_values` holds one value per widget in input order, plus values of helper widgets the frontend
adds, which belong to no input and are skipped here: the control_after_generate value after a seed
(or any widget declaring it), the upload button after an upload combo (image_upload, video_upload,
animated_image_upload: "image"; audio_upload: the player and the button, both null), the record button
after an AUDIO_RECORD widget, and the three buttons before a LOAD_3D widget. Values of browser-made widgets
(a microphone recording, a webcam capture, a rendered 3-D view) are made by the browser at queue time;
headlessly the saved value is sent, and --set can replace it with a file in ComfyUI's input folder.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FRONTEND_WIDGET_TYPES = frozenset({
    "INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "IMAGEUPLOAD", "FILEUPLOAD", "COLOR",
    "IMAGECOMPARE", "TREESELECT", "MULTISELECT", "CHART", "GALLERIA", "SELECTBUTTON", "TEXTAREA",
    "WEBCAM", "AUDIO_UI", "AUDIOUPLOAD", "AUDIO_RECORD", "LOAD_3D", "LOAD_3D_ANIMATION", "PREVIEW_3D",
    "PREVIEW_3D_ANIMATION",
})
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SEED_NAMES = {"seed", "noise_seed"}
# upload flag on a combo -> (values its helper widgets store, how many helper values follow at most)
UPLOAD_HELPERS = {"image_upload": ({"image", "video", None}, 1), "video_upload": ({"image", "video", None}, 1),
                  "animated_image_upload": ({"image", None}, 1), "audio_upload": ({"audio", None}, 2)}
HELPERS_AFTER = {"AUDIO_RECORD": ({"", None}, 1)}
_LOAD_3D_BUTTONS = ("upload3dmodel", "uploadExtraResources", "clear")
HELPERS_BEFORE = {"LOAD_3D": _LOAD_3D_BUTTONS, "LOAD_3D_ANIMATION": _LOAD_3D_BUTTONS}


def spec_type(spec) -> tuple[str, dict]:
    """An input spec -> (the type the frontend looks its widget up by, options).

    ['INT', {...}] -> 'INT'; [['a', 'b'], {...}] / ['COMBO', {'options': ...}] -> 'COMBO';
    ['INT,FLOAT', {'widgetType': 'INT'}] -> 'INT'."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return "*", {}
    kind, opts = spec[0], dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if isinstance(opts.get("widgetType"), str):
        return opts["widgetType"], opts
    if isinstance(kind, (list, tuple)):
        return "COMBO", opts
    return str(kind), opts


def saved_widget_names(node: Mapping | None) -> set[str]:
    """Inputs the saved UI node marks as widgets (its socket entries with a 'widget' field)."""
    names = set()
    for slot in (node or {}).get("inputs") or []:
        widget = slot.get("widget") if isinstance(slot, Mapping) else None
        if isinstance(widget, Mapping) and isinstance(widget.get("name"), str):
            names.add(widget["name"])
    return names


def declared_inputs(node_def: Mapping) -> list[tuple[str, Any]]:
    """(name, spec) of every input of a node definition: required then optional, in the server's order."""
    inputs = _mapping(node_def.get("input"))
    order = _mapping(node_def.get("input_order"))
    out = []
    for section in ("required", "optional"):
        specs = _mapping(inputs.get(section))
        names = order.get(section) if isinstance(order.get(section), list) else list(specs)
        out += [(name, specs[name]) for name in names if isinstance(name, str) and name in specs]
    return out


def _mapping(value) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def widget_inputs(node_def: Mapping, node: Mapping | None = None) -> list[tuple[str, str, dict]]:
    """(name, widget type, options) of the inputs the frontend shows as widgets, in widgets_values order."""
    marked = saved_widget_names(node)
    out = []
    for name, spec in declared_inputs(node_def):
        kind, opts = spec_type(spec)
        if not opts.get("forceInput") and (kind in FRONTEND_WIDGET_TYPES or name in marked):
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
    if kind not in ("INT", "FLOAT", "COMBO") or not _hashable(value):
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


def _helpers_after(kind: str, opts: Mapping) -> tuple[set, int]:
    for flag, helpers in UPLOAD_HELPERS.items():
        if opts.get(flag):
            return helpers
    return HELPERS_AFTER.get(kind, (set(), 0))


def _skip_helpers(values: list, i: int, allowed: set, most: int) -> int:
    while most > 0 and i < len(values) and _hashable(values[i]) and values[i] in allowed:
        i, most = i + 1, most - 1
    return i


def _hashable(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _skip_leading(values: list, i: int, buttons: tuple) -> int:
    for button in buttons:
        if i < len(values) and values[i] == button:
            i += 1
    return i


def _default_value(kind: str, opts: Mapping):
    if "default" in opts:
        return opts["default"]
    if kind == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def widget_values(node: Mapping, node_def: Mapping) -> dict[str, Any]:
    """Map a UI node's widgets_values onto input names, skipping the frontend's helper values.

    Widgets without a stored value get their default, as the frontend gives them when it loads the node."""
    values = node.get("widgets_values")
    specs = widget_inputs(node_def, node)
    if isinstance(values, Mapping):
        out = {name: values[name] for name, _, _ in specs if name in values}
    else:
        values, out, i = list(values or []), {}, 0
        for k, (name, kind, opts) in enumerate(specs):
            i = _skip_leading(values, i, HELPERS_BEFORE.get(kind, ()))
            if i >= len(values):
                break
            out[name] = values[i]
            i += 1
            following = specs[k + 1] if k + 1 < len(specs) else None
            if i < len(values) and _is_control_value(values[i], name, kind, opts, following):
                i += 1
            i = _skip_helpers(values, i, *_helpers_after(kind, opts))
    required = set(_mapping(_mapping(node_def.get("input")).get("required")))
    for name, kind, opts in specs:
        if name not in out and name in required:
            default = _default_value(kind, opts)
            if default is not None:
                out[name] = default
    return out

"""Regenerate the example workflows: UI format (*.json), API format (api/*.json) and thumbnails (*.jpg).

    python example_workflows/build_examples.py            # all of it
    python example_workflows/build_examples.py --no-run   # JSON only, keep the thumbnails

The embedded-default workflows are run in-process with the pack's own node classes (no ComfyUI
needed) and a few of their frames make the thumbnail; the Wan templates (user-supplied weights)
get a title card. The API copies are converted from the UI files by salt_core.comfyui_client.workflow,
so they are exactly what `python -m salt_core.comfyui_client` submits for the UI files.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACK_ID = "salt-comfyui"  # [project].name = the Comfy Registry id
EMBEDDED = "(embedded default)"

# Input specs of the ComfyUI core nodes the examples use (ComfyUI 0.3.64), as /object_info gives them.
_COMBO = [[], {}]
CORE_SPECS = {
    "CLIPLoader": {"input": {"required": {"clip_name": _COMBO, "type": _COMBO}, "optional": {"device": _COMBO}},
                   "output": ["CLIP"], "output_name": ["CLIP"]},
    "CLIPTextEncode": {"input": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP", {}]}},
                       "output": ["CONDITIONING"], "output_name": ["CONDITIONING"]},
    "VAELoader": {"input": {"required": {"vae_name": _COMBO}}, "output": ["VAE"], "output_name": ["VAE"]},
    "VAEDecode": {"input": {"required": {"samples": ["LATENT", {}], "vae": ["VAE", {}]}},
                  "output": ["IMAGE"], "output_name": ["IMAGE"]},
    "CreateVideo": {"input": {"required": {"images": ["IMAGE", {}], "fps": ["FLOAT", {}]},
                              "optional": {"audio": ["AUDIO", {}]}}, "output": ["VIDEO"], "output_name": ["VIDEO"]},
    "SaveVideo": {"input": {"required": {"video": ["VIDEO", {}], "filename_prefix": ["STRING", {}],
                                         "format": _COMBO, "codec": _COMBO}}, "output": [], "output_name": []},
}
for _name, _display in (("CLIPLoader", "Load CLIP"), ("CLIPTextEncode", "CLIP Text Encode (Prompt)"),
                        ("VAELoader", "Load VAE"), ("VAEDecode", "VAE Decode"), ("CreateVideo", "Create Video"),
                        ("SaveVideo", "Save Video")):
    CORE_SPECS[_name]["display_name"] = _display

# Where the real Wan files come from (ComfyUI's missing-model dialog offers these downloads).
WAN_TEXT = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
WAN_STUDENT = "self_forcing_dmd.pt"
_REPACK = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
SALT_CF, SALT_LL = "salt_cf.pt", "salt_ll.pt"
LONGLIVE_BASE, LONGLIVE_LORA = "longlive_base.pt", "lora.pt"
_SALT_HUB = "https://huggingface.co/domiso/Salt/resolve/main/checkpoints"
_LONGLIVE_HUB = "https://huggingface.co/Efficient-Large-Model/LongLive-1.3B/resolve/main/models"
MODEL_URLS = {
    WAN_TEXT: {"name": WAN_TEXT, "url": f"{_REPACK}/text_encoders/{WAN_TEXT}", "directory": "text_encoders"},
    WAN_VAE: {"name": WAN_VAE, "url": f"{_REPACK}/vae/{WAN_VAE}", "directory": "vae"},
    SALT_CF: {"name": SALT_CF, "url": f"{_SALT_HUB}/{SALT_CF}", "directory": "diffusion_models"},
    SALT_LL: {"name": SALT_LL, "url": f"{_SALT_HUB}/{SALT_LL}", "directory": "diffusion_models"},
    LONGLIVE_BASE: {"name": LONGLIVE_BASE, "url": f"{_LONGLIVE_HUB}/{LONGLIVE_BASE}", "directory": "diffusion_models"},
    LONGLIVE_LORA: {"name": LONGLIVE_LORA, "url": f"{_LONGLIVE_HUB}/{LONGLIVE_LORA}", "directory": "loras"},
}
_SHARED_FILES = (f"models/text_encoders/{WAN_TEXT}  <- umT5-XXL (Comfy-Org/Wan_2.1_ComfyUI_repackaged)\n"
                 f"models/vae/{WAN_VAE}  <- the Wan 2.1 VAE (same repository)\n")
WAN_NOTE = (
    "Wan 2.1 1.3B Self Forcing-family template (weights not included).\n\n"
    f"models/diffusion_models/{WAN_STUDENT}  <- checkpoints/self_forcing_dmd.pt from the Self Forcing release "
    "(huggingface.co/gdhe17/Self-Forcing); LongLive / Causal Forcing / Salt students (.pt or .safetensors) go "
    "here or in models/salt too.\n"
    f"models/text_encoders/{WAN_TEXT}  <- umT5-XXL (Comfy-Org/Wan_2.1_ComfyUI_repackaged)\n"
    f"models/vae/{WAN_VAE}  <- the Wan 2.1 VAE (same repository)\n\n"
    "832x480, 81 frames (21 latent frames = 7 chunks of 3), 4 steps. Press R after copying files."
)


def load_pack():
    name = "salt_pack_examples"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def object_info() -> dict:
    """/object_info-shaped specs of our nodes and the core nodes used (enough for the converter)."""
    pack = load_pack()
    info = {}
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        types_ = cls.INPUT_TYPES()
        info[name] = {"input": types_, "input_order": {k: list(v) for k, v in types_.items()},
                      "output": list(cls.RETURN_TYPES),
                      "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
                      "display_name": pack.NODE_DISPLAY_NAME_MAPPINGS[name]}
    return info | CORE_SPECS


class Workflow:
    """Builds a UI-format (frontend 0.4 schema) workflow node by node."""

    def __init__(self, info: dict):
        self.info = info
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def add(self, kind: str, pos, widgets: dict | None = None, inputs: dict | None = None, title: str | None = None,
            size=None) -> int:
        from salt_core.comfyui_client.widgets import _has_control, widget_inputs

        spec = self.info[kind]
        nid = len(self.nodes) + 1
        values, widget_names = [], set()
        for name, wkind, opts in widget_inputs(spec):
            widget_names.add(name)
            values.append((widgets or {}).get(name, _default(kind, name, opts)))
            if _has_control(name, wkind, opts):
                values.append("fixed")
        unknown = set(widgets or {}) - widget_names
        if unknown:
            raise ValueError(f"{kind}: no widgets {sorted(unknown)}")
        slots = []
        for section in ("required", "optional"):
            for name, s in (spec["input"].get(section) or {}).items():
                if name not in widget_names:
                    slots.append({"name": name, "type": s[0] if isinstance(s[0], str) else "COMBO", "link": None})
        outputs = [{"name": n, "type": t, "links": [], "slot_index": i}
                   for i, (t, n) in enumerate(zip(spec["output"], spec.get("output_name") or spec["output"]))]
        is_core = kind in CORE_SPECS
        node = {"id": nid, "type": kind, "pos": list(pos),
                "size": list(size or [320, 58 + 26 * (len(values) + len(slots))]),
                "flags": {}, "order": nid - 1, "mode": 0, "inputs": slots, "outputs": outputs,
                "properties": {"Node name for S&R": kind, "cnr_id": "comfy-core" if is_core else PACK_ID,
                               "ver": "0.3.64" if is_core else _pack_version()},
                "widgets_values": values}
        models = [MODEL_URLS[v] for v in values if isinstance(v, str) and v in MODEL_URLS]
        if models:
            node["properties"]["models"] = models
        if title:
            node["title"] = title
        self.nodes.append(node)
        for name, (src, slot) in (inputs or {}).items():
            self.link(src, slot, nid, name)
        return nid

    def note(self, pos, text: str, size=(420, 220)) -> int:
        nid = len(self.nodes) + 1
        self.nodes.append({"id": nid, "type": "Note", "pos": list(pos), "size": list(size), "flags": {},
                           "order": nid - 1, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                           "widgets_values": [text], "color": "#432", "bgcolor": "#653"})
        return nid

    def link(self, src: int, slot: int, dst: int, name: str) -> None:
        lid = len(self.links) + 1
        source, target = self.nodes[src - 1], self.nodes[dst - 1]
        ltype = source["outputs"][slot]["type"]
        [target_slot] = [i for i, s in enumerate(target["inputs"]) if s["name"] == name]
        target["inputs"][target_slot]["link"] = lid
        source["outputs"][slot]["links"].append(lid)
        self.links.append([lid, src, slot, dst, target_slot, ltype])

    def ui(self) -> dict:
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(self.nodes, sort_keys=True))), "revision": 0,
                "last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}}, "version": 0.4}


def _default(kind, name, opts):
    if "default" in opts:
        return opts["default"]
    return {"CLIPLoader": {"type": "wan", "device": "default"},
            "SaveVideo": {"format": "auto", "codec": "auto", "filename_prefix": "video/salt"},
            "CreateVideo": {"fps": 16.0}}.get(kind, {}).get(name)


def _pack_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


# ---- the examples -------------------------------------------------------------------------------

def _embedded_head(w: Workflow, y=0):
    m = w.add("SaltModelLoader", (0, y), {"model_name": EMBEDDED, "device": "auto", "offload": False})
    return m


def _tail(w: Workflow, latent: int, x: int, prefix: str, fps=16.0, vae=None):
    vae = vae or w.add("SaltVAELoader", (x, 420), {"vae_name": EMBEDDED})
    dec = w.add("SaltDecode", (x + 360, 0), {"chunk_frames": 1}, {"samples": (latent, 0), "vae": (vae, 0)})
    w.add("SaltSaveVideo", (x + 720, 0), {"fps": fps, "filename_prefix": prefix}, {"images": (dec, 0)},
          size=(400, 420))


def t2v_embedded(info) -> Workflow:
    w = Workflow(info)
    m = _embedded_head(w)
    t = w.add("SaltTextEncode", (360, 0), {"text": "a small red ball slides right on a black background"},
              {"model": (m, 0)}, size=(360, 160))
    s = w.add("SaltSampler", (760, 0), {"width": 64, "height": 64, "frames": 33, "seed": 7},
              {"model": (m, 0), "conditioning": (t, 0)})
    _tail(w, s, 1120, "salt/t2v")
    w.note((0, 260), "Text to video with the embedded default (tiny model trained on the synthetic shapes "
                     "world; runs on a CPU, no download). 64x64, 33 frames, 4 steps per chunk.")
    return w


def long_sink_window(info) -> Workflow:
    w = Workflow(info)
    m = _embedded_head(w)
    t = w.add("SaltTextEncode", (360, 0), {"text": "a blue square moves left and a yellow circle rises"},
              {"model": (m, 0)}, size=(360, 160))
    p = w.add("SaltCachePolicy", (360, 220), {"policy": "sink_window", "window_frames": 6, "sink_frames": 3})
    s = w.add("SaltSampler", (760, 0), {"width": 64, "height": 64, "frames": 129, "seed": 11},
              {"model": (m, 0), "conditioning": (t, 0), "cache_policy": (p, 0)})
    _tail(w, s, 1120, "salt/long_sink_window")
    w.note((0, 260), "A long video (129 frames = 33 latent frames) with a sink_window KV cache: the first 3 "
                     "latent frames stay, plus a rolling window of the last 6. Time and memory per chunk stay "
                     "flat however long the video gets (LongLive style).", size=(340, 240))
    return w


def prompt_schedule(info) -> Workflow:
    w = Workflow(info)
    m = _embedded_head(w)
    a = w.add("SaltTextEncode", (360, 0), {"text": "a red circle moves right on a grey background"},
              {"model": (m, 0)}, size=(360, 150), title="Prompt from frame 0")
    b = w.add("SaltTextEncode", (360, 190), {"text": "a red circle moves left on a grey background"},
              {"model": (m, 0)}, size=(360, 150), title="Prompt from frame 41")
    s1 = w.add("SaltPromptSchedule", (760, 0), {"start_frame": 0}, {"conditioning": (a, 0)})
    s2 = w.add("SaltPromptSchedule", (760, 140), {"start_frame": 41},
               {"conditioning": (b, 0), "previous": (s1, 0)})
    p = w.add("SaltCachePolicy", (760, 300), {"policy": "sink_window", "window_frames": 6, "sink_frames": 3,
                                              "recache_on_switch": True})
    s = w.add("SaltSampler", (1120, 0), {"width": 64, "height": 64, "frames": 81, "seed": 5},
              {"model": (m, 0), "schedule": (s2, 0), "cache_policy": (p, 0)})
    _tail(w, s, 1480, "salt/prompt_schedule")
    w.note((0, 380), "A prompt timeline: the circle turns around at frame 41 (the switch happens at the nearest "
                     "chunk boundary). On the switch the cached frames are re-encoded under the new prompt "
                     "(LongLive re-cache).")
    return w


_FOX = "A red fox trots through fresh snow in a pine forest at sunrise, cinematic, shallow depth of field"


def _wan_head(w: Workflow):
    m = w.add("SaltModelLoader", (0, 0), {"model_name": WAN_STUDENT, "dtype": "auto", "device": "auto"})
    clip = w.add("CLIPLoader", (0, 230), {"clip_name": WAN_TEXT, "type": "wan"})
    t = w.add("CLIPTextEncode", (360, 230), {"text": _FOX}, {"clip": (clip, 0)}, size=(380, 180))
    p = w.add("SaltCachePolicy", (360, 0), {"policy": "full", "max_frames": 21})
    s = w.add("SaltSampler", (780, 0), {"width": 832, "height": 480, "frames": 81, "seed": 42},
              {"model": (m, 0), "conditioning": (t, 0), "cache_policy": (p, 0)})
    w.note((0, 460), WAN_NOTE, size=(740, 260))
    return s


def wan_self_forcing(info) -> Workflow:
    w = Workflow(info)
    s = _wan_head(w)
    vae = w.add("SaltVAELoader", (1140, 420), {"vae_name": WAN_VAE})
    _tail(w, s, 1140, "salt/wan_self_forcing", vae=vae)
    return w


def _release_head(w: Workflow, model_file: str, family: str, note: str, text: str = _FOX):
    """Loader (family named: a renamed file still samples as trained) -> umT5 prompt -> the trained cache policy."""
    m = w.add("SaltModelLoader", (0, 0), {"model_name": model_file, "dtype": "auto", "device": "auto",
                                          "family": family, "weights": "auto"})
    clip = w.add("CLIPLoader", (0, 290), {"clip_name": WAN_TEXT, "type": "wan"})
    t = w.add("CLIPTextEncode", (360, 290), {"text": text}, {"clip": (clip, 0)}, size=(380, 180))
    p = w.add("SaltCachePolicy", (360, 0), None, {"model": (m, 0)}, title="Cache policy (as trained)")
    w.note((0, 520), note, size=(740, 280))
    return m, clip, t, p


def _one_prompt_release(info, model_file: str, family: str, note: str) -> Workflow:
    """A released student, one prompt, its trained cache policy, 832x480, 81 frames (21 latent frames)."""
    w = Workflow(info)
    m, _, t, p = _release_head(w, model_file, family, note)
    s = w.add("SaltSampler", (780, 0), {"width": 832, "height": 480, "frames": 81, "seed": 42},
              {"model": (m, 0), "conditioning": (t, 0), "cache_policy": (p, 0)})
    vae = w.add("SaltVAELoader", (1140, 420), {"vae_name": WAN_VAE})
    _tail(w, s, 1140, f"salt/{model_file.split('.')[0]}", vae=vae)
    return w


def salt_cf(info) -> Workflow:
    return _one_prompt_release(info, SALT_CF, "salt-cf", (
        "Salt + Causal Forcing, chunk-wise (weights not included).\n\n"
        f"models/diffusion_models/{SALT_CF}  <- checkpoints/salt_cf.pt of huggingface.co/domiso/Salt\n"
        + _SHARED_FILES +
        "\nIts EMA weights load (as its authors sample it). 832x480, 81 frames = 21 latent frames in 7 chunks of 3, "
        "4 steps [1000, 750, 500, 250] at shift 5, full KV cache, no CFG. Press R after copying files."))


def salt_ll(info) -> Workflow:
    return _one_prompt_release(info, SALT_LL, "salt-ll", (
        "Salt + LongLive-style attention (weights not included).\n\n"
        f"models/diffusion_models/{SALT_LL}  <- checkpoints/salt_ll.pt of huggingface.co/domiso/Salt\n"
        + _SHARED_FILES +
        "\nIts regular (not EMA) weights load, as its authors sample it. The KV cache is the trained one: a sink "
        "of the first 3 latent frames + a window of the last 6 (their local_attn_size 12 counts the sink and the "
        "current chunk of 3). 832x480, 81 frames, 4 steps. Longer videos keep time per chunk flat."))


def longlive_prompt_switch(info) -> Workflow:
    w = Workflow(info)
    m, clip, t, p = _release_head(w, LONGLIVE_BASE, "longlive", (
        "LongLive 1.3B: base + its long-video LoRA, two prompts with KV re-cache (weights not included).\n\n"
        f"models/diffusion_models/{LONGLIVE_BASE}  <- models/longlive_base.pt of "
        "huggingface.co/Efficient-Large-Model/LongLive-1.3B\n"
        f"models/loras/{LONGLIVE_LORA}  <- models/lora.pt of the same repository (rank 256, strength 1)\n"
        + _SHARED_FILES +
        "\nRegular weights, sink 3 + window 6 as trained. The prompt switches at frame 81; the frames still in the "
        "cache are re-encoded under the new prompt. 832x480, 165 frames (42 latent frames, 14 chunks)."),
        text="A red fox trots through fresh snow in a pine forest at sunrise, cinematic")
    lora = w.add("SaltLoraLoader", (360, 130), {"lora_name": LONGLIVE_LORA, "strength": 1.0}, {"model": (m, 0)})
    t2 = w.add("CLIPTextEncode", (360, 500), {"text": "The red fox stops and looks up at a flock of birds crossing "
                                                      "the sky, cinematic"}, {"clip": (clip, 0)}, size=(380, 180))
    s1 = w.add("SaltPromptSchedule", (780, 290), {"start_frame": 0}, {"conditioning": (t, 0)})
    s2 = w.add("SaltPromptSchedule", (780, 430), {"start_frame": 81}, {"conditioning": (t2, 0), "previous": (s1, 0)})
    s = w.add("SaltSampler", (1140, 0), {"width": 832, "height": 480, "frames": 165, "seed": 42},
              {"model": (lora, 0), "schedule": (s2, 0), "cache_policy": (p, 0)})
    vae = w.add("SaltVAELoader", (1500, 420), {"vae_name": WAN_VAE})
    _tail(w, s, 1500, "salt/longlive_switch", vae=vae)
    return w


def wan_core_nodes_mix(info) -> Workflow:
    w = Workflow(info)
    s = _wan_head(w)
    vae = w.add("VAELoader", (1140, 420), {"vae_name": WAN_VAE})
    core_img = w.add("VAEDecode", (1140, 0), None, {"samples": (s, 0), "vae": (vae, 0)},
                     title="core VAEDecode on Salt LATENT")
    w.add("SaltSaveVideo", (1500, 0), {"fps": 16.0, "filename_prefix": "salt/mix_core_decode"},
          {"images": (core_img, 0)}, size=(400, 380))
    salt_img = w.add("SaltDecode", (1140, 200), None, {"samples": (s, 0), "vae": (vae, 0)},
                     title="SaltDecode with the core VAE")
    video = w.add("CreateVideo", (1500, 420), {"fps": 16.0}, {"images": (salt_img, 0)})
    w.add("SaveVideo", (1860, 420), {"filename_prefix": "salt/mix_core_save"}, {"video": (video, 0)},
          size=(400, 380))
    return w


EXAMPLES = {
    "salt_t2v_embedded_default": (t2v_embedded, "Text to video, embedded default"),
    "salt_long_video_sink_window": (long_sink_window, "Long video, sink_window cache"),
    "salt_prompt_schedule": (prompt_schedule, "Prompt schedule (switch at frame 41)"),
    "salt_wan_self_forcing": (wan_self_forcing, "Wan 2.1 1.3B, Self Forcing"),
    "salt_wan_core_nodes_mix": (wan_core_nodes_mix, "Wan 2.1 with core VAE / video nodes"),
    "salt_cf": (salt_cf, "Salt + Causal Forcing"),
    "salt_ll": (salt_ll, "Salt + LongLive (sink + window)"),
    "longlive_prompt_switch": (longlive_prompt_switch, "LongLive: LoRA, two prompts"),
}
CARDS = {  # title-card lines of the templates whose weights are not included
    "salt_wan_self_forcing": ["832 x 480, 81 frames, 4 steps", "causal, KV cache, chunks of 3",
                              "weights: Self Forcing + Wan 2.1", "(not included, see the note)"],
    "salt_wan_core_nodes_mix": ["832 x 480, 81 frames, 4 steps", "core VAEDecode / CreateVideo / SaveVideo",
                                "weights: Self Forcing + Wan 2.1", "(not included, see the note)"],
    "salt_cf": ["832 x 480, 81 frames, 4 steps", "EMA weights, full KV cache", "weights: domiso/Salt salt_cf.pt",
                "(not included, see the note)"],
    "salt_ll": ["832 x 480, 81 frames, 4 steps", "regular weights, sink 3 + window 6",
                "weights: domiso/Salt salt_ll.pt", "(not included, see the note)"],
    "longlive_prompt_switch": ["832 x 480, 165 frames, 4 steps", "base + LoRA, re-cache on switch",
                               "weights: LongLive-1.3B", "(not included, see the note)"],
}
RUNNABLE = ("salt_t2v_embedded_default", "salt_long_video_sink_window", "salt_prompt_schedule")


# ---- running our own nodes in-process (thumbnails) ----------------------------------------------

def run_api(prompt: dict) -> dict:
    """Execute an API prompt made only of Salt nodes; -> {node id: the IMAGE given to each save node}."""
    nodes = load_pack().NODE_CLASS_MAPPINGS
    memo, saved = {}, {}

    def value(v):
        return evaluate(v[0])[v[1]] if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) else v

    def evaluate(nid):
        if nid not in memo:
            spec = prompt[nid]
            kwargs = {k: value(v) for k, v in spec["inputs"].items()}
            cls = nodes[spec["class_type"]]
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
            memo[nid] = out["result"] if isinstance(out, dict) and "result" in out else out
            if getattr(cls, "OUTPUT_NODE", False):
                saved[nid] = kwargs.get("images")
        return memo[nid]

    for nid, spec in prompt.items():
        if getattr(nodes[spec["class_type"]], "OUTPUT_NODE", False):
            evaluate(nid)
    return saved


def grid_thumbnail(frames, title: str):
    """4 frames spread over the video in a 2x2 grid, 512x512, with a caption."""
    from PIL import Image, ImageDraw, ImageFont

    n = frames.shape[0]
    picks = [round(i * (n - 1) / 3) for i in range(4)]
    canvas = Image.new("RGB", (512, 512), (20, 20, 24))
    for k, i in enumerate(picks):
        img = Image.fromarray((frames[i].clamp(0, 1) * 255).round().byte().numpy()).resize((252, 222), Image.NEAREST)
        canvas.paste(img, (4 + 256 * (k % 2), 4 + 226 * (k // 2)))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 462), title, fill=(235, 235, 235), font=ImageFont.load_default(22))
    draw.text((10, 490), "Salt for ComfyUI", fill=(150, 150, 160), font=ImageFont.load_default(14))
    return canvas


def title_card(title: str, lines: list[str]):
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("RGB", (512, 512), (18, 24, 38))
    draw = ImageDraw.Draw(canvas)
    for i in range(0, 512, 32):  # film strip edges
        draw.rectangle((8, i + 6, 24, i + 22), fill=(60, 70, 90))
        draw.rectangle((488, i + 6, 504, i + 22), fill=(60, 70, 90))
    draw.text((44, 150), title, fill=(240, 240, 240), font=ImageFont.load_default(24))
    for k, line in enumerate(lines):
        draw.text((44, 210 + 30 * k), line, fill=(170, 180, 200), font=ImageFont.load_default(18))
    return canvas


def build(run: bool = True) -> None:
    from salt_core.comfyui_client.workflow import ui_to_api

    info = object_info()
    (HERE / "api").mkdir(exist_ok=True)
    for name, (make, title) in EXAMPLES.items():
        ui = make(info).ui()
        api = ui_to_api(ui, info)
        (HERE / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
        (HERE / "api" / f"{name}.json").write_text(json.dumps(api, indent=2) + "\n")
        if name in RUNNABLE and run:
            with tempfile.TemporaryDirectory() as out:
                os.environ["SALT_OUTPUT_DIR"] = out
                [images] = run_api(api).values()
            grid_thumbnail(images, title).save(HERE / f"{name}.jpg", quality=90)
        elif name not in RUNNABLE:
            title_card(title, CARDS[name]).save(HERE / f"{name}.jpg", quality=90)
        print(f"wrote {name}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-run", action="store_true", help="write the JSON files only")
    build(run=not ap.parse_args().no_run)

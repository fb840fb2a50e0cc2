"""Our models under ComfyUI's model management, in a real ComfyUI (--cpu): the 1.3B architecture with random bf16
weights in Self Forcing's trainer format loads, samples a chunk at 160x96, decodes, is listed by ComfyUI as a
loaded model with its size, leaves on Unload Models (POST /free), and streams blocks bit-identically with a block
swap. What ComfyUI has loaded is read by a test-only node (tests/integration/_probe_nodes.py). Also ComfyUI's
ModelPatcher driving the embedded default in-process, low-VRAM partial loading included."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from salt_core.comfyui_client import runner as headless

from .test_comfyui import run

pytestmark = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="needs COMFYUI_PATH (a ComfyUI checkout)")

HERE = Path(__file__).resolve().parent
BIG = "wan_1.3b_random_bf16.safetensors"
DEPTH = 30


@pytest.fixture(scope="module")
def big_model(comfy) -> int:
    """The file in the server's models/diffusion_models; returns the bytes of its tensors."""
    sys.path.insert(0, str(HERE))
    from _big_checkpoint import write_random_dit

    from salt_core.config import dit_preset

    path = comfy.base / "models" / "diffusion_models" / BIG
    yield write_random_dit(path, dit_preset("wan2.1-t2v-1.3b"))
    path.unlink()


def workflow(blocks_on_device: int = 0, nonce: int = 0, decode: bool = True, width: int = 160, core_vae: bool = False,
             **tiling) -> dict:
    """Load, sample one chunk, decode it (or not; tiled with SaltDecode's `tiling` inputs; with ComfyUI's own VAE
    from VAELoader when core_vae), then report what ComfyUI has loaded."""
    prompt = {
        "1": {"class_type": "SaltModelLoader", "inputs": {"model_name": BIG, "dtype": "bf16", "attention": "sdpa",
                                                           "device": "auto", "offload": True,
                                                           "blocks_on_device": blocks_on_device}},
        "2": {"class_type": "SaltTestConditioning", "inputs": {"tokens": 512, "dim": 4096, "seed": 0}},
        "3": {"class_type": "SaltSampler", "inputs": {"model": ["1", 0], "conditioning": ["2", 0], "width": width,
                                                       "height": 96, "frames": 9, "steps": 1, "timesteps": "",
                                                       "transition": "model default", "seed": 7, "chunk_frames": 0}},
        "4": {"class_type": "SaltVAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors", "dtype": "auto",
                                                         "device": "auto"}},
        "5": {"class_type": "SaltDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 0], "chunk_frames": 1,
                                                      **tiling}},
        "6": {"class_type": "SaltTestLoadedModels", "inputs": {"images": ["5", 0], "nonce": nonce}},
    }
    if core_vae:
        prompt["4"] = {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}}
    if not decode:
        del prompt["4"], prompt["5"]
        prompt["6"]["inputs"] = {"latent": ["3", 0], "nonce": nonce}
    return prompt


def probe(comfy, prompt: dict, node: str = "6") -> dict:
    kind, events, _, prompt_id = run(comfy, prompt, timeout=900)
    assert kind == "execution_success", events[-1]
    history = headless.finished_history(headless.ComfyClient(comfy.url), prompt_id)
    return json.loads(history["outputs"][node]["text"][0])


def loaded(report: dict) -> dict[str, dict]:
    return {m["class"]: m for m in report["models"]}


def test_the_13b_model_is_a_comfyui_model_that_leaves_on_unload(comfy, big_model):
    report = probe(comfy, workflow())
    assert report["images"]["shape"] == [9, 96, 160, 3]
    models = loaded(report)
    assert models["SaltDiT"] == {"class": "SaltDiT", "device": "cpu", "size": big_model, "loaded": big_model}
    assert models["SaltVAE"]["loaded"] == models["SaltVAE"]["size"] > 100 * 2**20  # fp32 Wan VAE (~0.5 GB)
    assert re.search(r"Requested to load SaltDiT", comfy.log_text())

    status, _ = comfy.post("/free", {"unload_models": True})
    assert status == 200
    # The flag is served after the queue item that follows it at the latest: the second probe sees its effect.
    only_probe = {"6": {"class_type": "SaltTestLoadedModels", "inputs": {"nonce": 1}}}
    probe(comfy, only_probe)
    only_probe["6"]["inputs"]["nonce"] = 2
    assert loaded(probe(comfy, only_probe)) == {}


def test_block_swap_streams_the_13b_bit_identically(comfy, big_model):
    plain = probe(comfy, workflow(nonce=3, decode=False))
    swapped = probe(comfy, workflow(blocks_on_device=DEPTH - 2, nonce=4, decode=False))
    assert swapped["latent"] == plain["latent"] and plain["latent"]["shape"] == [1, 16, 3, 12, 20]
    import torch

    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT

    with torch.device("meta"):
        block = 2 * sum(p.numel() for p in WanDiT(dit_preset("wan2.1-t2v-1.3b")).blocks[0].parameters())  # bf16
    # ComfyUI manages the resident part only: two streamed blocks less (~93 MB each)
    assert loaded(swapped)["SaltDiT"]["size"] == loaded(plain)["SaltDiT"]["size"] - 2 * block


def test_the_13b_chunk_decodes_in_tiles_within_a_budget_and_bad_tiles_are_refused(comfy, big_model):
    """At 416x96 (52 latent cells wide) the Wan 2.1 VAE's tiles of 26 cells make 3 columns; ComfyUI reuses the
    sampled chunk for each decode (only SaltDecode's inputs change)."""
    plain = probe(comfy, workflow(nonce=10, width=416))["images"]
    tiled = probe(comfy, workflow(nonce=11, width=416, tile=26, tile_overlap=8))["images"]
    budget = probe(comfy, workflow(nonce=12, width=416, memory_budget_mb=700))["images"]  # untiled ~772 MiB
    assert plain["shape"] == tiled["shape"] == budget["shape"] == [9, 96, 416, 3]
    pixels = 9 * 96 * 416 * 3
    for other in (tiled, budget):  # the mean value and the mean magnitude agree to well under one 8-bit level
        assert abs(other["sum"] - plain["sum"]) / pixels < 1e-3 and abs(other["abs"] - plain["abs"]) / pixels < 1e-3
    assert tiled["sum"] != plain["sum"]  # it did tile
    core_plain = probe(comfy, workflow(nonce=14, width=416, core_vae=True))["images"]
    core_tiled = probe(comfy, workflow(nonce=15, width=416, core_vae=True, tile=26, tile_overlap=8))["images"]
    assert core_plain["shape"] == core_tiled["shape"] == [9, 96, 416, 3]  # ComfyUI's own tiled decode
    assert abs(core_tiled["sum"] - core_plain["sum"]) / pixels < 1e-2 and core_tiled["sum"] != core_plain["sum"]
    for inputs, words in (({"tile": 12}, ["tile=(12, 12) is smaller than the decoder's receptive field",
                                          "tile sides >= 25 latent cells"]),
                          ({"memory_budget_mb": 8}, ["memory_budget_mb=8", "is too small", "allowed: budget >="])):
        kind, events, _, _ = run(comfy, workflow(nonce=13, width=416, **inputs), timeout=300)
        data = events[-1]["data"]
        assert kind == "execution_error" and data["node_type"] == "SaltDecode"
        assert all(w in data["exception_message"] for w in words), data["exception_message"]
    assert comfy.get("/system_stats")["system"]


@pytest.mark.parametrize("change, status, words", [
    ({"blocks_on_device": DEPTH + 1}, 200, ["blocks_on_device must be a whole number from 0 to 30", "got 31"]),
    ({"device": "cuda"}, 200, ["device 'cuda' was chosen but no CUDA GPU is available", "allowed here: auto, cpu"]),
    ({"device": "cuda:7"}, 400, ["device", "cuda:7"]),
])
def test_bad_placement_is_refused_and_the_server_lives_on(comfy, big_model, change, status, words):
    prompt = workflow(nonce=5)
    prompt["1"]["inputs"].update(change)
    if status == 400:  # not one of the choices: ComfyUI's own validation refuses the prompt
        code, body = comfy.post("/prompt", {"prompt": prompt})
        text = json.dumps(body)
        assert code == 400 and all(w in text for w in words)
    else:
        kind, events, _, _ = run(comfy, prompt, timeout=300)
        data = events[-1]["data"]
        assert kind == "execution_error" and data["node_type"] == "SaltModelLoader"
        assert all(w in data["exception_message"] for w in words), data["exception_message"]
        assert not any(e["type"] == "executing" and e["data"].get("node") == "3" for e in events)  # no sampling
    assert comfy.get("/system_stats")["system"]


def test_comfyuis_model_patcher_loads_partially_and_unloads_our_models():
    """ComfyUI's own ModelPatcher in-process: sampling registers the DiT; a low-VRAM load of a third of it flags the
    rest to cast per call and samples the same latents; block swap and the VAE are registered too."""
    comfy_path = os.environ["COMFYUI_PATH"]
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run([python, str(HERE / "_model_patcher_check.py")], cwd=comfy_path, env=env,
                          capture_output=True, text=True, timeout=600)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and line, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(line[0][len("RESULT "):])
    assert out["after_sampling"] == [["SaltDiT", out["dit_bytes"], out["dit_bytes"]]]
    assert out["after_unload"] == [] and out["after_second_unload"] == []
    partial = out["partial"]
    assert partial["model_lowvram"] and partial["equal"]
    assert 0 < partial["cast_per_call"] < partial["castable"]
    assert 0 < partial["loaded_bytes"] <= out["dit_bytes"] // 3
    assert out["swap_equal"]
    assert out["swap_size"] == out["dit_bytes"] - out["swap_streamed_blocks"] * out["swap_block_bytes"]
    assert [name for name, _, _ in out["after_decode"]] == ["SaltVAE", "SaltDiT"]

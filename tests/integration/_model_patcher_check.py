"""Run inside ComfyUI's Python with ComfyUI's folder as the working directory (see test_comfyui_memory.py): the
pack's nodes against ComfyUI's real model management, without a server. Prints one JSON object of findings."""
import importlib.util
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, ".")
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_management as mm  # noqa: E402

spec = importlib.util.spec_from_file_location("salt_pack", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
pack = importlib.util.module_from_spec(spec)
sys.modules["salt_pack"] = pack
spec.loader.exec_module(pack)
N = pack.NODE_CLASS_MAPPINGS
torch.set_num_threads(1)


def loaded():
    return [(type(p.model).__name__, p.model_size(), p.loaded_size()) for p in mm.loaded_models()]


def sample(model, cond, seed=3):
    return N["SaltSampler"]().sample(model, 32, 32, 9, seed=seed, conditioning=cond)[0]["samples"]


out = {}
model = N["SaltModelLoader"]().load("(embedded default)")["result"][0]
cond = N["SaltTextEncode"]().encode(model, "a red circle moves left")[0]
want = sample(model, cond)
out["after_sampling"] = loaded()
out["dit_bytes"] = sum(t.numel() * t.element_size() for t in (*model.dit.parameters(), *model.dit.buffers()))

# ComfyUI's low-VRAM loading: only a third of the weights "fit"; the rest is flagged to cast per call.
patcher = model.salt_patcher
mm.unload_all_models()
out["after_unload"] = loaded()
patcher.load(torch.device("cpu"), lowvram_model_memory=patcher.model_size() // 3)
flags = [m.comfy_cast_weights for m in model.dit.modules() if hasattr(m, "comfy_cast_weights")]
out["partial"] = {"model_lowvram": patcher.model.model_lowvram, "cast_per_call": sum(flags), "castable": len(flags),
                  "loaded_bytes": patcher.loaded_size()}
from salt_core.pipeline import stream_latents  # noqa: E402
from salt_core.sampling.settings import SamplingOverrides  # noqa: E402

partial = torch.cat([model.to_raw_latents(c.latents) for c in stream_latents(
    model, cond[0][0], width=32, height=32, frames=9, overrides=SamplingOverrides(), seed=3)], dim=2)
out["partial"]["equal"] = torch.equal(partial, want)
patcher.detach()

swapped = N["SaltModelLoader"]().load("(embedded default)", blocks_on_device=1)["result"][0]
out["swap_equal"] = torch.equal(sample(swapped, cond), want)
out["swap_size"] = swapped.salt_patcher.model_size()
out["swap_block_bytes"] = swapped.dit.block_swap.block_bytes()
out["swap_streamed_blocks"] = len(swapped.dit.blocks) - 1  # one resident, the rest streamed (blocks are equal)

vae = N["SaltVAELoader"]().load("(embedded default)")[0]
N["SaltDecode"]().decode({"samples": want}, vae, chunk_frames=1)
out["after_decode"] = loaded()
mm.unload_all_models()
out["after_second_unload"] = loaded()
print("RESULT " + json.dumps(out))

"""ComfyUI's low-VRAM loading leaves some layers in CPU memory and sets their `comfy_cast_weights` flag; those
layers (our Linear, RMSNorm, FP32LayerNorm: `HostCast`) then bring weight and bias to the input's device per call,
and the few tensors outside such layers (the patch embedding, the modulation tables) are always used on the
input's device. Checked with `meta` as the compute device under strict device checks (like CUDA's)."""
import copy

import pytest
import torch
from torch import nn

from salt_core.config import DiTConfig
from salt_core.dit import WanDiT
from salt_core.dit.layers import HostCast, Linear
from salt_core.kv_cache import CachePolicy
from salt_core.lora.patches import DiffPatch, LowRankPatch
from salt_core.quant import quantize_linears_

from _strict_devices import META, StrictDevices
from conftest import perturbed

CONFIG = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=16)


def model():
    torch.manual_seed(0)
    return perturbed(WanDiT(CONFIG))


def flag_all(dit) -> int:
    """What ComfyUI's ModelPatcher does to every castable layer it leaves behind in --novram."""
    n = 0
    for m in dit.modules():
        if isinstance(m, HostCast):
            m.comfy_cast_weights = True
            n += 1
    return n


def inputs(device="cpu"):
    g = torch.Generator().manual_seed(5)
    x, ctx = torch.randn(1, 16, 3, 8, 8, generator=g), torch.randn(1, 7, 32, generator=g)
    return x.to(device), torch.tensor([600.0], device=device), ctx.to(device)


def run_everything(dit, x, t, ctx):
    """A bidirectional forward, then a prompt, a chunk and its context pass against a KV cache."""
    v = dit(x, t, ctx)
    cache = dit.new_cache(CachePolicy("window", window_frames=3), batch=1, latent_hw=(8, 8), chunk_frames=3)
    dit.set_prompt(cache, ctx)
    w = dit.forward_chunk(x, t, cache, [0, 1, 2])
    dit.forward_chunk(x, torch.zeros_like(t), cache, [0, 1, 2], commit=True)
    return v, w, dit.forward_chunk(x, t, cache, [3, 4, 5])


def with_patches_and_8bit(dit):
    quantize_linears_(dit)
    g = torch.Generator().manual_seed(2)
    for block in dit.blocks:
        block.ffn[0].patches = nn.ModuleList([LowRankPatch(torch.randn(128, 2, generator=g), torch.randn(2, 64, generator=g), 0.1),
                                             DiffPatch(None, torch.randn(128, generator=g), 0.5)])
    return dit


@pytest.mark.parametrize("variant", ["plain", "lora+fp8"])
def test_every_weight_left_on_the_cpu_is_brought_to_the_compute_device(variant):
    dit = model() if variant == "plain" else with_patches_and_8bit(model())
    assert flag_all(dit) > 10
    dit.run_device = META  # what the host says: compute there (weights stay on the CPU)
    assert all(p.device.type == "cpu" for p in dit.parameters())
    with torch.no_grad(), StrictDevices() as strict:
        outs = run_everything(dit, *inputs(META))
    assert all(o.is_meta and o.shape == (1, 16, 3, 8, 8) for o in outs) and strict.calls > 500


def test_the_strict_check_catches_a_layer_that_does_not_cast():
    dit = model()
    flag_all(dit)
    dit.blocks[1].ffn[2].comfy_cast_weights = False
    dit.run_device = META
    with torch.no_grad(), StrictDevices(), pytest.raises(RuntimeError, match="linear mixes tensors on"):
        dit(*inputs(META))


def test_casting_per_call_computes_exactly_what_the_resident_model_computes():
    ref = with_patches_and_8bit(model())
    flagged = copy.deepcopy(ref)
    flag_all(flagged)
    with torch.no_grad():
        for a, b in zip(run_everything(flagged, *inputs()), run_everything(ref, *inputs())):
            assert torch.equal(a, b)


def test_weight_and_bias_functions_apply_per_call():
    torch.manual_seed(0)
    layer = Linear(8, 4)
    x = torch.randn(3, 8)
    stored = layer.weight.detach().clone()
    layer.weight_function = [lambda w: 2 * w]
    layer.bias_function = [lambda b: b - 1]
    want = torch.nn.functional.linear(x, 2 * layer.weight, layer.bias - 1)
    assert torch.equal(layer(x), want)
    assert torch.equal(layer.weight, stored)  # the stored weight is untouched

"""8-bit float weights: plain fp8 and ComfyUI's scaled-fp8 files load with their Linear weights kept 8-bit,
compute like the dequantised model, and bad scale layouts are refused by name."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from salt_core.checkpoints import CheckpointError, load_dit, save_dit
from salt_core.config import SamplingDefaults, dit_preset
from salt_core.dit import WanDiT
from salt_core.quant import comfyui_fp8_state_dict, linear_weight_bytes, quantize_weight

from conftest import perturbed

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2
PREFIX = "model.diffusion_model."
# Output tolerance of an 8-bit model against its fp32 original, as max |diff| / max |fp32 output|: e4m3 keeps
# 3 mantissa bits (relative rounding up to 1/16 per weight), which averages out to ~2% on these tiny models.
FP8_TOLERANCE = {E4M3: 0.06, E5M2: 0.12}


def fp32_model(name: str = "tiny-wide", seed: int = 0) -> WanDiT:
    torch.manual_seed(seed)
    return perturbed(WanDiT(dit_preset(name)), seed)


def block_linear_names(model) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")]


def comfyui_layout(model, dtype=E4M3, scaled=True) -> tuple[dict, dict]:
    """Written here from ComfyUI's semantics, independently of salt_core.quant: per-tensor scale amax/max,
    stored weight = true weight / scale. -> (file tensors, {layer: dequantised fp32 weight})."""
    top = torch.finfo(dtype).max
    layers = set(block_linear_names(model))
    out, true = {}, {}
    for k, v in model.state_dict().items():
        layer = k.rpartition(".")[0]
        if k.endswith(".weight") and layer in layers:
            s = v.abs().max() / top if scaled else torch.tensor(1.0)
            q = (v / s).clamp(-top, top).to(dtype)
            out[PREFIX + k] = q
            if scaled:
                out[PREFIX + layer + ".scale_weight"] = s.float().reshape(())
            true[layer] = q.float() * s
        else:
            out[PREFIX + k] = v.detach().clone()
    if scaled:
        out[PREFIX + "scaled_fp8"] = torch.tensor([], dtype=dtype)
    return out, true


def run(model: WanDiT) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    ctx = torch.randn(1, 6, model.config.text_dim, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([600.0]), ctx).float()


def rel(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("dtype, scaled", [(E4M3, True), (E4M3, False), (E5M2, True), (E5M2, False)],
                         ids=["e4m3-scaled", "e4m3-plain", "e5m2-scaled", "e5m2-plain"])
def test_fp8_file_keeps_8bit_linears_and_computes_weight_times_scale(tmp_path, dtype, scaled):
    model = fp32_model()
    tensors, true = comfyui_layout(model, dtype, scaled)
    path = tmp_path / "wan_fp8.safetensors"
    save_file(tensors, path)
    loaded, info = load_dit(path)
    names = block_linear_names(loaded)
    assert info.eight_bit_weights == len(names) and info.dtype == torch.float32
    for n in names:
        layer = loaded.get_submodule(n)
        assert layer.weight.dtype == dtype and not layer.weight.requires_grad
        assert (layer.scale_weight is not None) == scaled
    assert loaded.blocks[0].norm3.weight.dtype == torch.float32  # everything else in the compute dtype
    # Exact semantics: the fp8 model equals an fp32 model holding weight.float() * scale_weight.
    reference = fp32_model()
    with torch.no_grad():
        for n, w in true.items():
            reference.get_submodule(n).weight.copy_(w)
    assert rel(run(loaded), run(reference)) < 1e-5
    # And it stays close to the fp32 original.
    assert 0 < rel(run(loaded), run(model)) < FP8_TOLERANCE[dtype]


def test_fp8_linear_weights_take_a_quarter_of_fp32_memory(tmp_path):
    model = fp32_model()
    path = tmp_path / "scaled.safetensors"
    save_file(comfyui_layout(model)[0], path)
    loaded, _ = load_dit(path)

    def block_bytes(m):
        return sum(linear_weight_bytes(m.get_submodule(n)) for n in block_linear_names(m))

    ratio = block_bytes(loaded) / block_bytes(model)
    assert 0.25 <= ratio < 0.2502  # 1 byte per weight instead of 4, plus one fp32 scale per layer


def test_explicit_dtype_dequantises_every_weight(tmp_path):
    model = fp32_model()
    tensors, true = comfyui_layout(model)
    path = tmp_path / "scaled.safetensors"
    save_file(tensors, path)
    kept, _ = load_dit(path)
    upcast, info = load_dit(path, dtype=torch.float32)
    assert info.eight_bit_weights == 0
    for n, w in true.items():
        layer = upcast.get_submodule(n)
        assert layer.weight.dtype == torch.float32 and layer.scale_weight is None
        torch.testing.assert_close(layer.weight, w, rtol=1e-6, atol=0)
    assert rel(run(upcast), run(kept)) < 1e-5


def test_compute_dtype_sets_everything_but_the_8bit_weights(tmp_path):
    model = fp32_model()
    path = tmp_path / "scaled.safetensors"
    save_file(comfyui_layout(model)[0], path)
    loaded, info = load_dit(path, compute_dtype=torch.bfloat16)
    assert info.dtype == torch.bfloat16 and loaded.dtype == torch.bfloat16
    assert loaded.blocks[0].ffn[0].weight.dtype == E4M3 and loaded.blocks[0].ffn[0].bias.dtype == torch.bfloat16
    assert loaded.blocks[0].self_attn.norm_q.weight.dtype == torch.bfloat16
    assert rel(run(loaded), run(model)) < 0.1  # fp8 weights and bf16 activations
    with pytest.raises(ValueError, match="not both"):
        load_dit(path, dtype=torch.float32, compute_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="8-bit weights stay 8-bit"):
        load_dit(path, dtype=E4M3)


def test_our_fp8_writer_matches_comfyui_layout():
    model = fp32_model()
    ours = comfyui_fp8_state_dict(model)
    theirs, _ = comfyui_layout(model)
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        assert ours[k].dtype == v.dtype and ours[k].shape == v.shape, k
        if v.dtype != E4M3:
            torch.testing.assert_close(ours[k], v, rtol=1e-6, atol=0)
    q, s = quantize_weight(torch.tensor([[0.0, -896.0], [1.0, 2.0]]))
    assert s.item() == 2.0 and q.float().tolist() == [[0.0, -448.0], [0.5, 1.0]]


def test_scaled_marker_with_a_missing_scale_names_the_weight(tmp_path):
    tensors, _ = comfyui_layout(fp32_model())
    del tensors[PREFIX + "blocks.1.ffn.2.scale_weight"]
    path = tmp_path / "incomplete.safetensors"
    save_file(tensors, path)
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    msg = str(e.value)
    assert str(path) in msg and "scaled_fp8" in msg and "nothing was loaded" in msg
    assert f"{PREFIX}blocks.1.ffn.2.weight  (no {PREFIX}blocks.1.ffn.2.scale_weight)" in msg


def test_misshapen_and_orphan_scales_are_refused(tmp_path):
    tensors, _ = comfyui_layout(fp32_model())
    tensors[PREFIX + "blocks.0.self_attn.q.scale_weight"] = torch.ones(3, 4)
    path = tmp_path / "bad_scale.safetensors"
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.self_attn\.q\.scale_weight' is torch\.float32 \(3, 4\)"):
        load_dit(path)
    tensors, _ = comfyui_layout(fp32_model())
    tensors[PREFIX + "blocks.0.self_attn.extra.scale_weight"] = torch.ones(())
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="scale tensors without their weight"):
        load_dit(path)


def test_per_channel_scales_and_ignored_input_scales(tmp_path):
    model = fp32_model()
    tensors, _ = comfyui_layout(model)
    w = model.blocks[0].ffn[0].weight
    q, s = quantize_weight(w, per_channel=True)  # s: [out, 1]
    tensors[PREFIX + "blocks.0.ffn.0.weight"], tensors[PREFIX + "blocks.0.ffn.0.scale_weight"] = q, s.reshape(-1)
    tensors[PREFIX + "blocks.0.ffn.0.scale_input"] = torch.tensor(0.5)
    path = tmp_path / "per_channel.safetensors"
    save_file(tensors, path)
    loaded, info = load_dit(path)
    layer = loaded.blocks[0].ffn[0]
    assert layer.scale_weight.shape == (w.shape[0], 1)
    torch.testing.assert_close(layer.effective_weight(torch.float32), q.float() * s, rtol=1e-6, atol=0)
    assert any("scale_input" in n for n in info.notes)


def test_fp8_model_saves_and_reloads_8bit(tmp_path):
    path = tmp_path / "scaled.safetensors"
    save_file(comfyui_layout(fp32_model())[0], path)
    loaded, _ = load_dit(path)
    ours = save_dit(tmp_path / "ours.safetensors", loaded, SamplingDefaults())
    again, info = load_dit(ours)
    assert info.format == "salt" and again.blocks[1].self_attn.o.weight.dtype == E4M3
    assert torch.equal(run(again), run(loaded))

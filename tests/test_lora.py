"""LoRA: every supported layout patches W + strength·(alpha/r)·B·A into the right layer, on the fly or merged,
stacks, leaves the input model untouched, loads LongLive's base + adapter in one call, and refuses keys,
shapes and adapter kinds it cannot apply, by name."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from salt_core.checkpoints import CheckpointError, load_dit, save_dit
from salt_core.checkpoints.keys import official_to_diffusers_name
from salt_core.config import SamplingDefaults, dit_preset
from salt_core.dit import WanDiT
from salt_core.lora import apply_lora, lora_layers, merge_lora, read_lora
from salt_core.quant import quantize_linears_

from conftest import perturbed

TARGETS = ("blocks.0.self_attn.q", "blocks.0.cross_attn.v", "blocks.1.ffn.0", "blocks.1.ffn.2", "head.head")


def tiny(seed: int = 0) -> WanDiT:
    torch.manual_seed(seed)
    return perturbed(WanDiT(dit_preset("tiny")), seed)


def factors(model, rank=4, seed=1, targets=TARGETS) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """layer -> (B [out, r], A [r, in]), random (not zero-initialised: every layer visibly changes)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in targets:
        w = model.get_parameter(name + ".weight")
        out[name] = (0.3 * torch.randn(w.shape[0], rank, generator=g), 0.3 * torch.randn(rank, w.shape[1], generator=g))
    return out


def merged_by_hand(model, fs, scale) -> WanDiT:
    ref = tiny()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, (b, a) in fs.items():
            ref.get_parameter(name + ".weight").add_(scale * (b @ a))
    return ref


def run(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    ctx = torch.randn(1, 5, model.config.text_dim, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([400.0]), ctx)


def peft_file(tmp_path, fs, alpha, rank=4) -> str:
    folder = tmp_path / "peft_adapter"
    folder.mkdir()
    tensors = {}
    for name, (b, a) in fs.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": alpha}))
    return str(folder)


def down_up_file(path, fs, alpha, key_of) -> str:
    """kohya / ComfyUI style: `<key>.lora_down.weight`, `<key>.lora_up.weight`, `<key>.alpha`."""
    tensors = {}
    for name, (b, a) in fs.items():
        key = key_of(name)
        tensors[key + ".lora_down.weight"], tensors[key + ".lora_up.weight"] = a, b
        tensors[key + ".alpha"] = torch.tensor(float(alpha))
    save_file(tensors, path)
    return str(path)


def kohya_file(tmp_path, fs, alpha) -> str:
    return down_up_file(tmp_path / "kohya.safetensors", fs, alpha, lambda n: "lora_unet_" + n.replace(".", "_"))


def comfyui_file(tmp_path, fs, alpha) -> str:
    return down_up_file(tmp_path / "comfyui.safetensors", fs, alpha, lambda n: "diffusion_model." + n)


def diffusers_file(tmp_path, fs, alpha) -> str:
    tensors = {}
    for name, (b, a) in fs.items():
        key = "transformer." + official_to_diffusers_name(name + ".weight")[: -len(".weight")]
        tensors[key + ".lora_A.weight"], tensors[key + ".lora_B.weight"] = a, b
        tensors[key + ".alpha"] = torch.tensor(float(alpha))
    save_file(tensors, tmp_path / "diffusers.safetensors")
    return str(tmp_path / "diffusers.safetensors")


LAYOUTS = {"peft": peft_file, "kohya": kohya_file, "comfyui": comfyui_file, "diffusers": diffusers_file}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_adds_alpha_over_rank_b_a_to_its_layer(tmp_path, layout):
    model = tiny()
    fs = factors(model)
    path = LAYOUTS[layout](tmp_path, fs, alpha=2.0)
    patched = apply_lora(model, path, strength=1.0)
    scale = 2.0 / 4
    for name, param in model.named_parameters():
        layer_name = name.rpartition(".")[0]
        layer = patched.get_submodule(layer_name)
        if name.endswith(".weight") and layer_name in fs:
            b, a = fs[layer_name]
            torch.testing.assert_close(layer.effective_weight(torch.float32), param + scale * (b @ a),
                                       rtol=1e-6, atol=1e-6)
        elif hasattr(layer, "patches") and layer_name not in fs:
            assert layer.patches is None, f"{layer_name} was patched but is no target"
    assert sorted(lora_layers(patched)) == sorted(fs)
    torch.testing.assert_close(run(patched), run(merged_by_hand(model, fs, scale)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strength", [0.5, -1.5, 0.0])
def test_strength_scales_the_update(tmp_path, strength):
    model = tiny()
    fs = factors(model)
    path = kohya_file(tmp_path, fs, alpha=4.0)  # alpha = rank: scale 1
    patched = apply_lora(model, path, strength)
    torch.testing.assert_close(run(patched), run(merged_by_hand(model, fs, strength)), rtol=1e-5, atol=1e-5)
    if strength == 0:
        assert lora_layers(patched) == [] and torch.equal(run(patched), run(model))


def test_without_any_alpha_the_factors_apply_as_they_are(tmp_path):
    model = tiny()
    fs = factors(model)
    save_file({f"diffusion_model.{n}.lora_{p}.weight": t for n, (b, a) in fs.items() for p, t in (("up", b), ("down", a))},
              tmp_path / "no_alpha.safetensors")
    patched = apply_lora(model, tmp_path / "no_alpha.safetensors")
    torch.testing.assert_close(run(patched), run(merged_by_hand(model, fs, 1.0)), rtol=1e-5, atol=1e-5)
    overridden = apply_lora(model, tmp_path / "no_alpha.safetensors", alpha=8.0)  # explicit alpha: 8 / 4
    torch.testing.assert_close(run(overridden), run(merged_by_hand(model, fs, 2.0)), rtol=1e-5, atol=1e-5)


def test_the_input_model_is_untouched_and_shares_its_weights(tmp_path):
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out_before = run(model)
    patched = apply_lora(model, peft_file(tmp_path, factors(model), alpha=4.0))
    assert patched is not model and lora_layers(model) == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(run(model), out_before)
    w, w2 = model.blocks[0].self_attn.q.weight, patched.blocks[0].self_attn.q.weight
    assert w is not w2 and w.data_ptr() == w2.data_ptr()  # same storage, separate Parameter objects
    assert set(patched.state_dict()) == set(model.state_dict())  # the factors are not weights of the model


def test_stacked_loras_add_and_merge_equals_on_the_fly(tmp_path):
    model = tiny()
    fa, fb = factors(model, seed=1), factors(model, rank=2, seed=2, targets=TARGETS[:2])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pa, pb = kohya_file(tmp_path / "a", fa, alpha=4.0), comfyui_file(tmp_path / "b", fb, alpha=1.0)
    both = apply_lora(apply_lora(model, pa, 0.7), pb, 2.0)
    ref = merged_by_hand(merged_by_hand(model, fa, 0.7), fb, 2.0 * 1.0 / 2)
    on_the_fly = run(both)
    torch.testing.assert_close(on_the_fly, run(ref), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="merge_lora"):
        save_dit(tmp_path / "x.safetensors", both, SamplingDefaults())
    merge_lora(both)
    assert lora_layers(both) == []
    torch.testing.assert_close(run(both), on_the_fly, rtol=1e-5, atol=1e-5)
    assert torch.equal(run(model), run(tiny()))  # merging the copy did not write into the original's storage


def test_diff_patches_on_norms_and_biases(tmp_path):
    model = tiny()
    g = torch.Generator().manual_seed(3)
    norm_diff = 0.1 * torch.randn(model.blocks[0].norm3.weight.shape, generator=g)
    bias_diff = 0.1 * torch.randn(model.blocks[1].ffn[2].bias.shape, generator=g)
    mod_diff = 0.1 * torch.randn(model.blocks[0].modulation.shape, generator=g)
    save_file({"diffusion_model.blocks.0.norm3.diff": norm_diff, "diffusion_model.blocks.1.ffn.2.diff_b": bias_diff,
               "diffusion_model.blocks.0.modulation.diff": mod_diff}, tmp_path / "diff.safetensors")
    patched = apply_lora(model, tmp_path / "diff.safetensors", strength=0.5)
    ref = tiny()
    with torch.no_grad():
        ref.blocks[0].norm3.weight.add_(0.5 * norm_diff)
        ref.blocks[1].ffn[2].bias.add_(0.5 * bias_diff)
        ref.blocks[0].modulation.add_(0.5 * mod_diff)
    torch.testing.assert_close(run(patched), run(ref), rtol=1e-5, atol=1e-5)
    assert torch.equal(model.blocks[0].norm3.weight, tiny().blocks[0].norm3.weight)


def test_lora_on_8bit_weights_keeps_them_8bit(tmp_path):
    fp8 = quantize_linears_(tiny())
    fs = factors(fp8)
    patched = apply_lora(fp8, kohya_file(tmp_path, fs, alpha=4.0))
    assert patched.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    dequantised = tiny()
    with torch.no_grad():
        for n, m in fp8.named_modules():
            if getattr(m, "scale_weight", None) is not None:
                dequantised.get_submodule(n).weight.copy_(m.effective_weight(torch.float32))
    torch.testing.assert_close(run(patched), run(merged_by_hand(dequantised, fs, 1.0)), rtol=1e-5, atol=1e-5)


# ---- LongLive: base checkpoint + PEFT adapter ---------------------------------------------------------

def longlive_files(tmp_path, model, fs):
    """LongLive's release: a trainer checkpoint {"generator": WanDiffusionWrapper state dict (prefix `model.`)}
    and lora.pt = {"generator_lora": PEFT state dict of every block Linear, "critic_lora": ..., "step": n}."""
    base = tmp_path / "longlive_base.pt"
    torch.save({"generator": {"model." + k: v for k, v in model.state_dict().items()}}, base)
    gen = {}
    for name, (b, a) in fs.items():
        gen[f"base_model.model.{name}.lora_A.weight"] = a
        gen[f"base_model.model.{name}.lora_B.weight"] = b
    critic = {k: torch.zeros_like(v) for k, v in gen.items()}
    adapter = tmp_path / "lora.pt"
    torch.save({"generator_lora": gen, "critic_lora": critic, "step": 3000}, adapter)
    return base, adapter


def test_longlive_base_and_adapter_load_as_one_model(tmp_path):
    model = tiny()
    block_linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")]
    fs = factors(model, rank=8, targets=block_linears)
    base, adapter = longlive_files(tmp_path, model, fs)
    loaded, info = load_dit(base, lora=[(adapter, 1.0)])  # rank 256 / alpha 256 in the release: scale 1
    assert info.loras == (str(adapter),) and lora_layers(loaded) == []  # merged: a plain model
    assert any("generator_lora" in n for n in info.notes)
    torch.testing.assert_close(run(loaded), run(merged_by_hand(model, fs, 1.0)), rtol=1e-5, atol=1e-5)
    unmerged, _ = load_dit(base, lora=[(adapter, 1.0)], merge_lora=False)
    assert sorted(lora_layers(unmerged)) == sorted(block_linears)
    torch.testing.assert_close(run(unmerged), run(loaded), rtol=1e-5, atol=1e-5)


# ---- bad adapters ---------------------------------------------------------------------------------------

def test_keys_of_another_model_family_are_listed(tmp_path):
    save_file({"double_blocks.0.img_attn.qkv.lora_A.weight": torch.zeros(4, 64),
               "double_blocks.0.img_attn.qkv.lora_B.weight": torch.zeros(192, 4)}, tmp_path / "flux.safetensors")
    with pytest.raises(CheckpointError) as e:
        apply_lora(tiny(), tmp_path / "flux.safetensors")
    msg = str(e.value)
    assert "flux.safetensors" in msg and "another model family" in msg and "nothing was applied" in msg
    assert "double_blocks.0.img_attn.qkv.lora_A.weight" in msg


def test_a_full_model_given_as_a_lora_is_named_as_such(tmp_path):
    save_file(tiny().state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="a full model .*, not a LoRA"):
        apply_lora(tiny(), tmp_path / "model.safetensors")


def test_unmatched_keys_beside_good_ones_are_listed(tmp_path):
    model = tiny()
    tensors = {f"diffusion_model.{n}.lora_{p}.weight": t for n, (b, a) in factors(model).items()
               for p, t in (("up", b), ("down", a))}
    tensors["diffusion_model.blocks.0.self_attn.qkv.lora_down.weight"] = torch.zeros(4, 64)
    tensors["diffusion_model.blocks.9.self_attn.q.lora_down.weight"] = torch.zeros(4, 64)
    save_file(tensors, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError) as e:
        apply_lora(model, tmp_path / "odd.safetensors")
    msg = str(e.value)
    assert "unmatched keys (2)" in msg and "blocks.9.self_attn.q.lora_down.weight" in msg
    assert "blocks.0.self_attn.qkv.lora_down.weight" in msg and "another model family" not in msg


def test_a_lora_for_another_model_size_names_the_key_and_both_shapes(tmp_path):
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 1536),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(1536, 4)},
              tmp_path / "for_1_3b.safetensors")
    with pytest.raises(CheckpointError) as e:
        apply_lora(tiny(), tmp_path / "for_1_3b.safetensors")
    msg = str(e.value)
    assert "lora_up.weight' (1536, 4)" in msg and "lora_down.weight' (4, 1536)" in msg
    assert "(64, 64) of 'blocks.0.self_attn.q'" in msg


def test_load_dit_checks_the_adapter_before_reading_the_base(tmp_path, monkeypatch):
    from salt_core.checkpoints import load as load_module

    model = tiny()
    base = tmp_path / "base.safetensors"
    save_file(model.state_dict(), base)
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 1536),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(1536, 4)}, tmp_path / "big.safetensors")
    monkeypatch.setattr(load_module, "fill", lambda *a, **k: pytest.fail("weights were read before the LoRA check"))
    with pytest.raises(CheckpointError, match="big.safetensors"):
        load_dit(base, lora=[(tmp_path / "big.safetensors", 1.0)])


@pytest.mark.parametrize("extra, words", [
    ({"diffusion_model.blocks.0.self_attn.q.dora_scale": torch.ones(64, 1)}, "DoRA"),
    ({"diffusion_model.blocks.0.self_attn.k.hada_w1_a": torch.ones(64, 4)}, "LoHa"),
], ids=["dora", "loha"])
def test_unsupported_adapter_kinds_are_named(tmp_path, extra, words):
    model = tiny()
    tensors = {f"diffusion_model.{n}.lora_{p}.weight": t for n, (b, a) in factors(model).items()
               for p, t in (("up", b), ("down", a))}
    save_file({**tensors, **extra}, tmp_path / "kind.safetensors")
    with pytest.raises(CheckpointError, match=words):
        apply_lora(model, tmp_path / "kind.safetensors")


def test_a_factor_without_its_partner_and_nan_factors_are_refused(tmp_path):
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 64)}, tmp_path / "half.safetensors")
    with pytest.raises(CheckpointError, match="has no matching up factor"):
        apply_lora(tiny(), tmp_path / "half.safetensors")
    bad = torch.zeros(64, 4)
    bad[3, 1] = float("nan")
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 64),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": bad}, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match=r"NaN or inf(.|\n)*self_attn\.q\.lora_up\.weight"):
        read_lora(tmp_path / "nan.safetensors")


def test_text_encoder_keys_are_ignored_with_a_note(tmp_path):
    model = tiny()
    fs = factors(model)
    tensors = {f"lora_unet_{n.replace('.', '_')}.lora_{p}.weight": t for n, (b, a) in fs.items()
               for p, t in (("up", b), ("down", a))}
    tensors["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.zeros(4, 8)
    save_file(tensors, tmp_path / "with_te.safetensors")
    loaded, info = load_dit(_saved(tmp_path, model), lora=[(tmp_path / "with_te.safetensors", 1.0)])
    assert any("text-encoder keys" in n for n in info.notes)
    torch.testing.assert_close(run(loaded), run(merged_by_hand(model, fs, 1.0)), rtol=1e-5, atol=1e-5)


def _saved(tmp_path, model) -> str:
    return save_dit(tmp_path / "base.safetensors", model, SamplingDefaults())


# ---- the node -------------------------------------------------------------------------------------------

def test_lora_node_returns_a_patched_copy_and_keeps_the_input(tmp_path, monkeypatch):
    import dataclasses
    import sys
    import types

    from test_nodes import load_pack

    folder = tmp_path / "loras"
    folder.mkdir()
    model_obj = load_pack().NODE_CLASS_MAPPINGS["SaltModelLoader"]().load("(embedded default)", offload=False)["result"][0]
    fs = factors(model_obj.dit, targets=("blocks.0.self_attn.q",))
    kohya_file(folder, fs, alpha=4.0)
    fp = types.ModuleType("folder_paths")
    fp.get_filename_list = lambda name: sorted(p.name for p in folder.iterdir()) if name == "loras" else []
    fp.get_full_path = lambda name, f: str(folder / f) if name == "loras" and (folder / f).exists() else None
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    node = load_pack().NODE_CLASS_MAPPINGS["SaltLoraLoader"]
    spec = node.INPUT_TYPES()["required"]
    assert spec["lora_name"][0] == ["kohya.safetensors"]
    assert (spec["strength"][1]["min"], spec["strength"][1]["max"]) == (-10.0, 10.0)
    (out,) = node().apply(model_obj, "kohya.safetensors", 0.5)
    assert dataclasses.is_dataclass(out) and out is not model_obj and out.dit is not model_obj.dit
    assert out.sampling == model_obj.sampling and out.salt_placement == model_obj.salt_placement
    assert lora_layers(out.dit) == ["blocks.0.self_attn.q"] and lora_layers(model_obj.dit) == []
    b, a = fs["blocks.0.self_attn.q"]
    layer = out.dit.blocks[0].self_attn.q
    torch.testing.assert_close(layer.effective_weight(torch.float32), layer.weight + 0.5 * (b @ a), rtol=1e-6, atol=1e-6)

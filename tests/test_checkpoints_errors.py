"""Checkpoint files that must not load silently: NaN / inf weights (DiT and VAE), invalid or absurd header
values."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from salt_core.checkpoints import CheckpointError, load_dit, load_vae, save_dit
from salt_core.checkpoints.storage import has_nonfinite
from salt_core.config import DiTConfig, SamplingDefaults, dit_preset
from salt_core.dit import WanDiT

from conftest import perturbed


def tiny_state() -> dict:
    torch.manual_seed(0)
    return {k: v.detach().clone() for k, v in perturbed(WanDiT(dit_preset("tiny"))).state_dict().items()}


# ---- NaN / inf ---------------------------------------------------------------------------------------

def test_nan_and_inf_weights_are_named_and_nothing_loads(tmp_path):
    sd = tiny_state()
    sd["blocks.1.ffn.0.weight"][3, 5] = float("nan")
    sd["head.modulation"][0, 1, 2] = float("-inf")
    path = tmp_path / "diverged.safetensors"
    save_file({"model.diffusion_model." + k: v for k, v in sd.items()}, path)
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "nothing was loaded" in msg and "NaN or inf" in msg
    assert "(2)" in msg and "model.diffusion_model.blocks.1.ffn.0.weight" in msg
    assert "model.diffusion_model.head.modulation" in msg


def test_nan_in_an_8bit_weight_is_found(tmp_path):
    sd = tiny_state()
    w = sd["blocks.0.self_attn.k.weight"].to(torch.float8_e4m3fn)
    w.view(torch.uint8)[1, 1] = 0x7F  # e4m3fn's NaN
    sd["blocks.0.self_attn.k.weight"] = w
    path = tmp_path / "fp8_nan.safetensors"
    save_file(sd, path)
    with pytest.raises(CheckpointError, match=r"NaN or inf(.|\n)*blocks\.0\.self_attn\.k\.weight"):
        load_dit(path)


def test_a_value_that_overflows_the_requested_dtype_is_reported_as_such(tmp_path):
    sd = tiny_state()
    sd["blocks.0.ffn.2.weight"][0, 0] = 1e6  # finite in fp32, inf in fp16
    path = tmp_path / "big.safetensors"
    save_file(sd, path)
    load_dit(path)  # fine as float32
    with pytest.raises(CheckpointError) as e:
        load_dit(path, dtype=torch.float16)
    msg = str(e.value)
    assert "out of range of torch.float16" in msg and "blocks.0.ffn.2.weight" in msg and "NaN or inf in" not in msg


def test_vae_with_nan_weights_names_the_file(tmp_path):
    from salt_core.vae import VAE_PRESETS, WanVAE

    sd = {k: v.clone() for k, v in WanVAE(VAE_PRESETS["micro"]).state_dict().items()}
    key = next(k for k in sd if k.startswith("decoder.") and k.endswith(".weight"))
    sd[key].view(-1)[0] = float("nan")
    path = tmp_path / "vae_nan.safetensors"
    save_file(sd, path)
    with pytest.raises(CheckpointError) as e:
        load_vae(path)
    assert str(e.value).startswith(str(path)) and key in str(e.value)


def test_has_nonfinite_is_exact():
    t = torch.full((4,), 3e38)  # the float32 sum overflows, yet every value is finite
    assert not has_nonfinite(t)
    assert not has_nonfinite(torch.ones(100_000, dtype=torch.float16))  # likewise in fp16 (sum > 65504)
    t[2] = float("inf")
    assert has_nonfinite(t)
    assert has_nonfinite(torch.tensor([0.0, float("nan")], dtype=torch.bfloat16))
    assert not has_nonfinite(torch.empty(0))
    e5 = torch.tensor([1.0, 2.0]).to(torch.float8_e5m2)
    assert not has_nonfinite(e5)
    assert has_nonfinite(torch.tensor([1.0, float("inf")]).to(torch.float8_e5m2))
    e4 = torch.tensor([448.0, -448.0, 0.0]).to(torch.float8_e4m3fn)  # the largest finite values
    assert not has_nonfinite(e4)
    e4.view(torch.uint8)[2] = 0xFF  # -NaN
    assert has_nonfinite(e4)


# ---- header values ---------------------------------------------------------------------------------

def _with_header_field(tmp_path, field: str, value) -> str:
    torch.manual_seed(0)
    good = save_dit(tmp_path / "good.safetensors", WanDiT(dit_preset("tiny")), SamplingDefaults())
    with safe_open(good, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    cfg = json.loads(meta["dit_config"])
    cfg[field] = value
    meta["dit_config"] = json.dumps(cfg)
    path = tmp_path / "edited.safetensors"
    save_file(tensors, path, metadata=meta)
    return str(path)


def test_invalid_header_field_is_named(tmp_path):
    path = _with_header_field(tmp_path, "dim", "abc")
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    msg = str(e.value)
    assert msg.startswith(path) and "'dit_config'" in msg and "dim='abc' must be an integer" in msg
    assert "string formatting" not in msg


@pytest.mark.parametrize("field, value", [("text_len", 10_000_000), ("rope_max_positions", 2**31),
                                          ("num_layers", 100_000), ("dim", 1 << 20)])
def test_absurd_header_values_are_refused_before_any_allocation(tmp_path, monkeypatch, field, value):
    from salt_core.checkpoints import load as load_module

    path = _with_header_field(tmp_path, field, value)
    monkeypatch.setattr(load_module, "WanDiT", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    assert f"{field}={value}" in str(e.value) and "outside the allowed range" in str(e.value)


@pytest.mark.parametrize("kwargs, words", [
    ({"dim": 0}, "dim=0 is outside the allowed range 1..16384"),
    ({"text_len": 5000}, "text_len=5000 is outside the allowed range 1..4096"),
    ({"ffn_dim": 1.5}, "ffn_dim=1.5 must be an integer"),
    ({"qk_norm": "yes"}, "qk_norm='yes' must be true or false"),
    ({"num_heads": True}, "num_heads=True must be an integer"),
    ({"eps": float("nan")}, "eps=nan is outside the allowed range"),
    ({"patch_size": (1, 2)}, "patch_size=(1, 2) must be 3 integers in 1..16"),
    ({"freq_dim": 257}, "freq_dim=257 must be even"),
    ({"rope_theta": 0.0}, "rope_theta=0.0 is outside the allowed range"),
])
def test_config_ranges(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        DiTConfig(**kwargs)


def test_every_preset_passes_the_range_checks():
    from salt_core.config import DIT_PRESETS

    for name, config in DIT_PRESETS.items():
        assert DiTConfig.from_dict(config.to_dict()) == config, name

"""Checkpoints: format/config detection, loading every supported format, our header, clear errors,
safe unpickling and atomic saves. Big models exist only on the meta device."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from salt_core.checkpoints import (
    CheckpointError,
    detect,
    detect_from_shapes,
    dit_diffusers_to_official,
    dit_official_to_diffusers,
    load_dit,
    load_vae,
    open_checkpoint,
    save_dit,
    save_vae,
)
from salt_core.checkpoints import save as save_module
from salt_core.kv_cache import CachePolicy
from salt_core.config import DIT_PRESETS, DiTConfig, SamplingDefaults
from salt_core.dit import WanDiT

TINY = DIT_PRESETS["tiny"]


# ---- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def meta_1_3b() -> dict:
    with torch.device("meta"):
        return WanDiT(DIT_PRESETS["wan2.1-t2v-1.3b"]).state_dict()


def tiny_model(seed: int = 0, config: DiTConfig = TINY) -> WanDiT:
    """Random tiny DiT; every tensor perturbed so that swapping any two same-shaped weights shows."""
    torch.manual_seed(seed)
    model = WanDiT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def run(model: WanDiT) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    context = torch.randn(1, 5, model.config.text_dim, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([700.0]), context)


def cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def assert_same_weights(loaded: torch.nn.Module, saved: torch.nn.Module):
    """Every tensor of the state dict: same names, dtype and values."""
    a, b = loaded.state_dict(), saved.state_dict()
    assert a.keys() == b.keys()
    for k in b:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def comfyui(sd: dict) -> dict:
    return {"model.diffusion_model." + k: v for k, v in sd.items()}


def trainer(ema: dict, generator: dict) -> dict:
    """Self Forcing trainer layout: wrapper prefix `model.`, FSDP segments in the raw generator."""
    return {
        "generator": {"model._fsdp_wrapped_module." + k: v for k, v in generator.items()},
        "generator_ema": {"model." + k: v for k, v in ema.items()},
        "critic": {"model." + k: v for k, v in generator.items()},
    }


def assert_clear_error(excinfo, path, *fragments):
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, msg
    assert "Traceback" not in msg


# ---- detection from names and shapes (meta tensors, 1.3B) --------------------------------------

@pytest.mark.parametrize(
    "make, fmt, entry",
    [
        (lambda sd: sd, "official", None),
        (comfyui, "comfyui", None),
        (dit_official_to_diffusers, "diffusers", None),
        (lambda sd: trainer(sd, sd), "self_forcing", "generator_ema"),
        (lambda sd: {"generator": {"model._fsdp_wrapped_module." + k: v for k, v in sd.items()}},
         "self_forcing", "generator"),
        (lambda sd: {"module." + k: v for k, v in sd.items()}, "official", None),
    ],
    ids=["official", "comfyui", "diffusers", "self_forcing", "self_forcing_no_ema", "ddp"],
)
def test_detects_the_1_3b_preset_in_every_format(meta_1_3b, make, fmt, entry):
    det = detect(make(meta_1_3b))
    assert (det.format, det.preset, det.trainer_entry) == (fmt, "wan2.1-t2v-1.3b", entry)
    assert det.config == DIT_PRESETS["wan2.1-t2v-1.3b"] and det.config.num_heads == 12
    assert len(det.names) == 825


def test_detects_14b_from_shapes_alone():
    with torch.device("meta"):
        sd = WanDiT(DIT_PRESETS["wan2.1-t2v-14b"]).state_dict()
    det = detect_from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    assert det.preset == "wan2.1-t2v-14b" and det.config.num_heads == 40


def test_unknown_geometry_assumes_head_dim_128(meta_1_3b):
    sd = {k: v for k, v in meta_1_3b.items() if not k.startswith(tuple(f"blocks.{i}." for i in range(20, 30)))}
    det = detect(sd)
    assert det.preset is None and det.config.num_layers == 20 and det.config.num_heads == 12
    assert any("head_dim 128" in n for n in det.notes)


def test_file_detection_reads_only_the_safetensors_header(tmp_path, monkeypatch):
    path = tmp_path / "tiny_comfy.safetensors"
    save_file(comfyui(cpu_state(tiny_model())), path)
    from salt_core.checkpoints.io import CheckpointReader

    monkeypatch.setattr(CheckpointReader, "read", lambda self, name: pytest.fail("tensor data was read"))
    with open_checkpoint(path) as reader:
        det = detect_from_shapes(reader.shapes(), source=str(path))
    assert (det.format, det.preset) == ("comfyui", "tiny")


# ---- diffusers names ---------------------------------------------------------------------------

def test_diffusers_conversion_round_trips_exactly(meta_1_3b):
    names = {k: k for k in meta_1_3b}
    diffusers = dit_official_to_diffusers(names)
    assert dit_diffusers_to_official(diffusers) == names
    assert "blocks.3.norm2.weight" in diffusers and diffusers["blocks.3.norm2.weight"] == "blocks.3.norm3.weight"
    assert diffusers["scale_shift_table"] == "head.modulation"
    with pytest.raises(ValueError, match="no counterpart"):
        dit_official_to_diffusers({"img_emb.proj.0.weight": 0})


def test_diffusers_names_and_outputs_match_diffusers_model():
    diffusers = pytest.importorskip("diffusers")
    c = TINY
    ref = diffusers.WanTransformer3DModel(
        patch_size=c.patch_size, num_attention_heads=c.num_heads, attention_head_dim=c.head_dim,
        in_channels=c.in_dim, out_channels=c.out_dim, text_dim=c.text_dim, freq_dim=c.freq_dim,
        ffn_dim=c.ffn_dim, num_layers=c.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=c.eps,
    ).eval()
    ours = tiny_model()
    converted = dit_official_to_diffusers(cpu_state(ours))
    assert set(converted) == set(ref.state_dict())
    ref.load_state_dict(converted, strict=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    ctx = torch.randn(1, c.text_len, c.text_dim, generator=g)  # full length: no padding on either side
    t = torch.tensor([700.0])
    with torch.no_grad():
        want = ref(x, t, ctx, return_dict=False)[0]
        got = ours(x, t, ctx)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # a swapped weight would differ by O(1)


# ---- round trips through files -----------------------------------------------------------------

def _write_official(path, model):
    save_file(cpu_state(model), path)


def _write_comfyui(path, model):
    save_file(comfyui(cpu_state(model)), path)


def _write_diffusers(path, model):
    save_file(dit_official_to_diffusers(cpu_state(model)), path)


def _write_self_forcing(path, model):
    torch.save(trainer(cpu_state(model), cpu_state(tiny_model(seed=99))), path)


def _write_salt(path, model):
    save_dit(path, model, SamplingDefaults(causal=True))


@pytest.mark.parametrize(
    "write, name, fmt",
    [
        (_write_official, "official.safetensors", "official"),
        (_write_comfyui, "comfy.safetensors", "comfyui"),
        (_write_diffusers, "diffusion_pytorch_model.safetensors", "diffusers"),
        (_write_self_forcing, "trainer.pt", "self_forcing"),
        (_write_salt, "student.safetensors", "salt"),
    ],
)
def test_every_format_loads_to_identical_outputs(tmp_path, write, name, fmt):
    model = tiny_model()
    path = tmp_path / name
    write(path, model)
    loaded, info = load_dit(path)
    assert (info.format, info.preset, info.config) == (fmt, "tiny", TINY)
    assert_same_weights(loaded, model)
    assert torch.equal(run(loaded), run(model))
    assert not any(p.is_meta for p in loaded.parameters())


def test_sharded_safetensors_load_from_folder_or_index(tmp_path):
    import json

    model = tiny_model()
    sd = cpu_state(model)
    names = sorted(sd)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[::2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file(dit_official_to_diffusers({k: sd[k] for k in keys}), tmp_path / shard)
        weight_map.update({n: shard for n in dit_official_to_diffusers({k: k for k in keys})})
    index = tmp_path / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for where in (tmp_path, index):
        loaded, info = load_dit(where)
        assert info.format == "diffusers" and torch.equal(run(loaded), run(model))
        assert_same_weights(loaded, model)


def test_self_forcing_entry_choice_and_defaults(tmp_path):
    ema, raw = tiny_model(seed=0), tiny_model(seed=99)
    path = tmp_path / "self_forcing_dmd.pt"
    torch.save(trainer(cpu_state(ema), cpu_state(raw)), path)
    m_auto, info = load_dit(path)
    m_gen, info_gen = load_dit(path, which="generator")
    assert info.trainer_entry == "generator_ema" and info_gen.trainer_entry == "generator"
    assert_same_weights(m_auto, ema)
    assert_same_weights(m_gen, raw)
    assert torch.equal(run(m_auto), run(ema)) and torch.equal(run(m_gen), run(raw))
    s = info.sampling
    assert (s.causal, s.chunk_frames, s.shift, s.timesteps, s.transition) == (
        True, 3, 5.0, (1000.0, 750.0, 500.0, 250.0), "renoise")
    assert info.sampling_source == "family" and info.family == "self-forcing"


def test_plain_wan_file_defaults_to_bidirectional_teacher_sampling(tmp_path):
    path = tmp_path / "wan2.1_t2v.safetensors"
    _write_official(path, tiny_model())
    _, info = load_dit(path)
    assert not info.sampling.causal and len(info.sampling.timesteps) == 50 and info.guidance_scale > 1
    assert info.sampling_source == "family" and info.family == "wan2.1-t2v-1.3b"


def test_dtype_is_kept_or_cast(tmp_path):
    path = tmp_path / "bf16.safetensors"
    model = tiny_model()
    save_dit(path, model, SamplingDefaults(), dtype=torch.bfloat16)
    m, info = load_dit(path)
    assert info.dtype == torch.bfloat16 and m.dtype == torch.bfloat16
    half = tiny_model().to(torch.bfloat16)
    assert_same_weights(m, half)
    m32, info32 = load_dit(path, dtype=torch.float32)
    assert m32.dtype == torch.float32 and all(p.dtype == torch.float32 for p in m32.parameters())
    assert_same_weights(m32, half.float())  # the file's bf16 values, widened exactly


def test_our_header_restores_config_and_sampling_exactly(tmp_path):
    config = DiTConfig(dim=64, ffn_dim=96, num_heads=4, num_layers=1, text_dim=32, text_len=7, eps=1e-5,
                       rope_max_positions=64, rope_theta=5000.0, qk_norm=False, cross_attn_norm=False)
    sampling = SamplingDefaults(causal=True, chunk_frames=1, shift=3.5, timesteps=(1000.0, 500.0), transition="ode",
                                integer_timesteps=True, resolution=(96, 160), train_iterations=321,
                                cache=CachePolicy("sink_window", window_frames=5, sink_frames=2,
                                                  positions="cache_relative", context_t=12.5))
    model = tiny_model(config=config)
    path = tmp_path / "ours.safetensors"
    save_dit(path, model, sampling, extra_metadata={"run": "abc", "lambda_sc": 0.5})
    loaded, info = load_dit(path)
    assert info.config == config and info.sampling == sampling and info.preset is None
    assert info.sampling_source == "header" and info.format == "salt"
    assert info.metadata["run"] == "abc" and info.metadata["lambda_sc"] == "0.5"
    assert loaded.timestep_convention.integer  # the model carries the convention it was trained with
    assert_same_weights(loaded, model)
    assert torch.equal(run(loaded), run(model))


# ---- errors: one clear ValueError that names the file ------------------------------------------

def test_truncated_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.safetensors"
    _write_official(path, tiny_model())
    data = path.read_bytes()
    for keep in (len(data) // 2, 20, 3):
        path.write_bytes(data[:keep])
        with pytest.raises(CheckpointError) as e:
            load_dit(path)
        assert_clear_error(e, path)
        assert "truncated" in str(e.value)


def test_truncated_torch_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(cpu_state(tiny_model()), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    assert_clear_error(e, path, "truncated, damaged")


def _unet_like():
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.0.in_layers.2.weight": torch.zeros(320, 320, 3, 3),
        "model.diffusion_model.out.2.weight": torch.zeros(4, 320, 3, 3),
        "first_stage_model.decoder.conv_in.weight": torch.zeros(512, 4, 3, 3),
    }


def _flux_like():
    return {"double_blocks.0.img_attn.qkv.weight": torch.zeros(9, 3), "single_blocks.0.linear1.weight": torch.zeros(3, 3),
            "img_in.weight": torch.zeros(3, 64)}


def _i2v_like():
    sd = cpu_state(tiny_model())
    sd["img_emb.proj.1.weight"] = torch.zeros(64, 1280)
    for i in range(TINY.num_layers):
        sd[f"blocks.{i}.cross_attn.k_img.weight"] = torch.zeros(64, 64)
    return sd


def _lora_like():
    return {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 64),
            "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(64, 4)}


def _vae_like():
    return cpu_state(_tiny_vae())


@pytest.mark.parametrize(
    "make, words",
    [(_unet_like, ["not a Wan 2.1 text-to-video DiT", "UNet", "input_blocks"]),
     (_flux_like, ["not a Wan 2.1 text-to-video DiT", "double_blocks"]),
     (_i2v_like, ["not a Wan 2.1 text-to-video DiT", "image-to-video", "k_img"]),
     (_lora_like, ["LoRA", "lora_A"]),
     (_vae_like, ["VAE", "load it as a VAE"])],
    ids=["sd_unet", "flux", "wan_i2v", "lora", "vae"],
)
def test_wrong_architecture_is_rejected(tmp_path, make, words):
    path = tmp_path / "other.safetensors"
    save_file(make(), path)
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    assert_clear_error(e, path, *words)


def test_image_conditioned_channel_counts_are_rejected():
    with torch.device("meta"):
        sd = WanDiT(DiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=1, in_dim=36)).state_dict()
    with pytest.raises(CheckpointError, match=r"^wan22_i2v\.safetensors: not a Wan 2.1 text-to-video DiT: .*in_dim=36"):
        detect(sd, source="wan22_i2v.safetensors")


def test_missing_unexpected_and_misshapen_keys_are_listed(tmp_path):
    sd = cpu_state(tiny_model())
    del sd["blocks.1.ffn.2.bias"]
    sd["blocks.1.cross_attn.q.weight"] = torch.zeros(64, 60)
    sd["blocks.0.extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.safetensors"
    save_file(comfyui(sd), path)
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    assert_clear_error(
        e, path, "missing keys (1)", "blocks.1.ffn.2.bias  (expected (64,))",
        "unexpected keys (1)", "model.diffusion_model.blocks.0.extra.weight",
        "shape mismatches (1)", "model.diffusion_model.blocks.1.cross_attn.q.weight: expected (64, 64), found (64, 60)",
        "nothing was loaded",
    )


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _PlainObject:
    pass


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump", "class"])
def test_pickle_with_code_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    obj = {"patch_embedding.weight": torch.zeros(1), "payload": _PlainObject() if how == "class" else _Payload(marker)}
    if how == "pickle.dump":
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    else:
        torch.save(obj, path)
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    assert_clear_error(e, path, "refused to unpickle", "nothing from it was executed")
    assert not marker.exists()
    for advice in ("weights_only", "safe_globals", "trusted source"):  # torch's text suggests both unsafe ways out
        assert advice not in str(e.value)


def test_trainer_entry_request_errors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    _write_official(plain, tiny_model())
    with pytest.raises(CheckpointError) as e:
        load_dit(plain, which="ema")
    assert_clear_error(e, plain, "plain state dict")
    only_gen = tmp_path / "gen.pt"
    torch.save({"generator": {"model." + k: v for k, v in cpu_state(tiny_model()).items()}}, only_gen)
    with pytest.raises(CheckpointError) as e:
        load_dit(only_gen, which="ema")
    assert_clear_error(e, only_gen, "generator_ema", "['generator']")


def test_newer_salt_format_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "future.safetensors"
    monkeypatch.setattr(save_module, "SALT_FORMAT_VERSION", 99)
    save_dit(path, tiny_model(), SamplingDefaults())
    monkeypatch.undo()
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    assert_clear_error(e, path, "salt format 99", "upgrade")


# ---- atomic save -------------------------------------------------------------------------------

def test_failed_save_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "student.safetensors"
    save_dit(path, tiny_model(seed=0), SamplingDefaults())
    before = path.read_bytes()

    def half_then_fail(tensors, tmp, metadata):
        with open(tmp, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(save_module, "_write_safetensors", half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        save_dit(path, tiny_model(seed=1), SamplingDefaults())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["student.safetensors"]
    monkeypatch.undo()
    load_dit(path)  # still a valid file


# ---- VAE ---------------------------------------------------------------------------------------

def _tiny_vae():
    from salt_core.vae import VAE_PRESETS, WanVAE

    torch.manual_seed(0)
    vae = WanVAE(VAE_PRESETS["micro"]).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vae


def _vae_io(vae):
    """One latent frame through the decoder (the weights themselves are compared exactly too)."""
    z = torch.randn(1, vae.config.z_dim, 1, 2, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return vae.decode(z)


@pytest.fixture(scope="module")
def tiny_vae_and_io():
    vae = _tiny_vae()
    return vae, _vae_io(vae)


@pytest.mark.parametrize("layout", ["official.pth", "comfyui.safetensors", "diffusers.safetensors"])
def test_vae_formats_load_to_identical_outputs(tmp_path, layout, tiny_vae_and_io):
    from salt_core.vae import official_to_diffusers

    vae, want = tiny_vae_and_io
    sd = cpu_state(vae)
    path = tmp_path / f"vae_{layout}"
    if layout.endswith(".pth"):
        torch.save(sd, path)
    else:
        save_file(official_to_diffusers(sd) if layout.startswith("diffusers") else sd, path)
    loaded, info = load_vae(path)
    assert info.preset == "micro" and info.format == ("diffusers" if "diffusers" in layout else "official")
    assert_same_weights(loaded, vae)
    assert torch.equal(_vae_io(loaded), want)


def test_vae_header_restores_latent_statistics(tmp_path):
    import dataclasses

    from salt_core.vae import WanVAE

    vae = _tiny_vae()
    cfg = dataclasses.replace(vae.config, latent_mean=tuple(0.1 * i for i in range(4)), latent_std=(1.5, 2.0, 0.5, 3.0))
    custom = WanVAE(cfg)
    custom.load_state_dict(vae.state_dict())
    path = tmp_path / "vae_ours.safetensors"
    save_vae(path, custom)
    loaded, info = load_vae(path)
    assert info.format == "salt" and info.config == cfg
    assert_same_weights(loaded, custom)
    assert torch.equal(loaded.latent_std, custom.latent_std) and torch.equal(loaded.latent_mean, custom.latent_mean)
    with pytest.raises(CheckpointError) as e:
        load_dit(path)
    assert_clear_error(e, path, "load_vae")


def test_dit_file_given_to_load_vae_is_a_clear_error(tmp_path):
    path = tmp_path / "dit.safetensors"
    _write_official(path, tiny_model())
    with pytest.raises(CheckpointError) as e:
        load_vae(path)
    assert_clear_error(e, path, "not a Wan 2.1 VAE", "load_dit")

"""The ComfyUI nodes as plain functions, with ComfyUI absent (its modules faked where a test needs them)."""
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACK = "salt_pack_under_test"


def load_pack():
    """Import the repo root the way ComfyUI imports a custom node folder: as a package from its __init__.py."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is ~10x faster than two on a busy 2-core machine (no OpenMP spin-waits)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def N():
    return load_pack().NODE_CLASS_MAPPINGS


def outputs(ret):
    """A node's outputs, whether it returned a tuple or {"ui": ..., "result": tuple}."""
    return ret["result"] if isinstance(ret, dict) else ret


@pytest.fixture(scope="module")
def model(N):
    return outputs(N["SaltModelLoader"]().load("(embedded default)"))[0]


@pytest.fixture(scope="module")
def cond(N, model):
    out = N["SaltTextEncode"]().encode(model, "a red circle moves left")
    return out["result"][0] if isinstance(out, dict) else out[0]


class Interrupted(Exception):
    pass


@pytest.fixture
def fake_comfy(monkeypatch, tmp_path):
    """Minimal stand-ins for folder_paths, comfy.utils and comfy.model_management."""
    calls = {"progress": [], "interrupt_at": None, "freed": 0}
    models = tmp_path / "models"
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(models)
    fp.supported_pt_extensions = {".safetensors", ".pt"}
    fp.folder_names_and_paths = {"diffusion_models": ([str(models / "diffusion_models")], {".safetensors"}),
                                 "vae": ([str(models / "vae")], {".safetensors"})}

    def get_filename_list(folder):
        paths, _ = fp.folder_names_and_paths[folder]
        return sorted(f for p in paths if os.path.isdir(p) for f in os.listdir(p))

    def get_full_path(folder, name):
        for p in fp.folder_names_and_paths[folder][0]:
            if os.path.isfile(os.path.join(p, name)):
                return os.path.join(p, name)
        return None

    fp.get_filename_list = get_filename_list
    fp.get_full_path = get_full_path
    fp.get_output_directory = lambda: str(tmp_path / "output")

    def get_save_image_path(prefix, out, w, h):
        sub, stem = os.path.split(prefix)
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        return os.path.join(out, sub), stem, 1 + len(os.listdir(os.path.join(out, sub))), sub, prefix

    fp.get_save_image_path = get_save_image_path

    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            calls["progress"].append((value, total, preview))
            if calls["interrupt_at"] == value:
                raise Interrupted("Processing interrupted")

    utils.ProgressBar = ProgressBar
    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.free_memory = lambda n, d: calls.__setitem__("freed", n)
    mm.soft_empty_cache = lambda: None
    mm.throw_exception_if_processing_interrupted = lambda: None
    mm.InterruptProcessingException = Interrupted
    comfy = types.ModuleType("comfy")
    comfy.utils, comfy.model_management = utils, mm
    for name, mod in (("folder_paths", fp), ("comfy", comfy), ("comfy.utils", utils), ("comfy.model_management", mm)):
        monkeypatch.setitem(sys.modules, name, mod)
    calls["folder_paths"] = fp
    return calls


def tiny_dit_model():
    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT

    torch.manual_seed(1)
    model = WanDiT(dit_preset("tiny"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # no zero-initialised tensor left: a lost weight shows
    return model


def save_tiny_dit(path, causal: bool, model=None):
    from salt_core.checkpoints import save_dit
    from salt_core.config import SamplingDefaults

    sampling = SamplingDefaults(causal=causal, chunk_frames=1, timesteps=(1000.0, 500.0),
                                transition="renoise" if causal else "ode")
    return save_dit(path, model if model is not None else tiny_dit_model(), sampling)


def assert_same_tensors(got: torch.nn.Module, want: torch.nn.Module):
    """Every tensor of the state dict (and the latent statistics a VAE keeps outside it) is equal."""
    a, b = got.state_dict(), want.state_dict()
    assert a.keys() == b.keys()
    for k in b:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    for stat in ("latent_mean", "latent_std"):
        if hasattr(want, stat):
            assert torch.equal(getattr(got, stat), getattr(want, stat)), stat


# ---- the node surface --------------------------------------------------------------------------------

def test_every_node_is_a_salt_v1_node_with_tooltips_on_every_input(N):
    assert len(N) == 9
    display = load_pack().NODE_DISPLAY_NAME_MAPPINGS
    for node_id, cls in N.items():
        assert node_id.startswith("Salt") and node_id in display
        assert cls.CATEGORY == "Salt" and callable(getattr(cls(), cls.FUNCTION))
        assert isinstance(cls.RETURN_TYPES, tuple)
        for section in cls.INPUT_TYPES().values():
            for name, spec in section.items():
                assert len(spec) == 2 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_model_list_offers_the_embedded_default_and_the_model_folders(N, fake_comfy, tmp_path):
    d = tmp_path / "models" / "diffusion_models"
    d.mkdir(parents=True)
    (d / "student.safetensors").write_bytes(b"")
    load_pack().nodes.host.register_model_folder()
    choices = N["SaltModelLoader"].INPUT_TYPES()["required"]["model_name"][0]
    assert choices == ["(embedded default)", "student.safetensors"]


def test_registering_models_salt_keeps_an_existing_entry(fake_comfy):
    fp = fake_comfy["folder_paths"]
    fp.folder_names_and_paths["salt"] = (["/elsewhere/salt"], set())
    register = load_pack().nodes.host.register_model_folder
    register()
    register()
    paths, exts = fp.folder_names_and_paths["salt"]
    assert paths == ["/elsewhere/salt", os.path.join(fp.models_dir, "salt")]
    assert exts == fp.supported_pt_extensions


# ---- loaders --------------------------------------------------------------------------------------------

def test_model_loader_gives_the_embedded_default(model):
    assert model.sampling.causal and model.dit.config.text_dim > 0
    assert model.salt_placement == ("auto", True, 0)


def test_model_loader_loads_a_checkpoint_from_the_model_folder(N, fake_comfy, tmp_path):
    folder = tmp_path / "models" / "diffusion_models"
    folder.mkdir(parents=True)
    saved = tiny_dit_model()
    save_tiny_dit(folder / "bidi.safetensors", causal=False, model=saved)
    m = outputs(N["SaltModelLoader"]().load("bidi.safetensors", dtype="auto", device="cpu", offload=False))[0]
    assert not m.sampling.causal and m.dit.dtype == torch.float32 and m.name == "bidi.safetensors"
    assert_same_tensors(m.dit, saved)
    half = outputs(N["SaltModelLoader"]().load("bidi.safetensors", dtype="bf16", device="cpu", offload=False))[0]
    assert_same_tensors(half.dit, saved.to(torch.bfloat16))


def test_model_loader_names_a_missing_file(N, fake_comfy):
    with pytest.raises(FileNotFoundError, match=r"'gone.safetensors'.*models/salt, models/diffusion_models"):
        N["SaltModelLoader"]().load("gone.safetensors")


def test_model_loader_rejects_a_damaged_file_with_its_name(N, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="broken.safetensors"):
        N["SaltModelLoader"]().load(str(bad))


def test_vae_loader_embedded_and_file(N, tmp_path):
    from salt_core.checkpoints import save_vae

    vae = N["SaltVAELoader"]().load("(embedded default)")[0]
    path = save_vae(tmp_path / "v.safetensors", vae)
    again = N["SaltVAELoader"]().load(path, dtype="fp32", device="cpu")[0]
    assert again.config == vae.config
    assert_same_tensors(again, vae)


def test_vae_loader_refuses_a_dit_file(N, tmp_path):
    path = save_tiny_dit(tmp_path / "dit.safetensors", causal=True)
    with pytest.raises(ValueError, match="load_dit|DiT"):
        N["SaltVAELoader"]().load(path)


# ---- prompts ------------------------------------------------------------------------------------------------

def test_text_encode_gives_core_conditioning(cond, model):
    [[emb, extra]] = cond
    assert emb.shape[0] == 1 and emb.shape[2] == model.dit.config.text_dim
    assert extra == {"pooled_output": None}


def test_text_encode_refuses_an_empty_prompt(N, model):
    with pytest.raises(ValueError, match="empty"):
        N["SaltTextEncode"]().encode(model, "  ")


def test_prompt_schedule_chains_and_sorts(N, cond):
    node = N["SaltPromptSchedule"]()
    s = node.build(cond, 40)[0]
    s = node.build(cond, 0, previous=s)[0]
    assert [f for f, _ in s.entries] == [0, 40]
    with pytest.raises(ValueError, match="already has a prompt starting at frame 40"):
        node.build(cond, 40, previous=s)


def test_schedule_switches_snap_to_the_nearest_chunk_start(N, cond):
    sampler = load_pack().nodes.sampler
    s = N["SaltPromptSchedule"]().build(cond, 0)[0].with_entry(13, cond[0][0]).with_entry(30, cond[0][0])
    segs = sampler.schedule_segments(s, latent_frames=12, chunk=3, frames=45)
    # frame 13 -> latent 4 -> chunk start 3; frame 30 -> latent 8 -> chunk start 9
    assert [seg.start_frame for seg in segs] == [0, 3, 9]
    close = N["SaltPromptSchedule"]().build(cond, 0)[0].with_entry(2, cond[0][0])
    with pytest.raises(ValueError, match="same chunk"):
        sampler.schedule_segments(close, latent_frames=12, chunk=3, frames=45)
    late = N["SaltPromptSchedule"]().build(cond, 8)[0]
    with pytest.raises(ValueError, match="needs a prompt at frame 0"):
        sampler.schedule_segments(late, latent_frames=12, chunk=3, frames=45)


def test_cache_policy_node_gives_overrides_of_the_trained_policy(N, model):
    from salt_core.sampling.settings import CacheOverrides

    node = N["SaltCachePolicy"]()
    assert node.build()[0] == CacheOverrides(recache_on_switch=True)  # every widget at "model default"
    p = node.build("sink_window", 6, 2, positions="cache_relative", recache_on_switch=False)[0]
    assert p == CacheOverrides(kind="sink_window", window_frames=6, sink_frames=2, positions="cache_relative",
                               recache_on_switch=False)
    shown = node.build("window", window_frames=3, model=model)
    assert "trained with: sink 3 + window 3, cache_relative" in shown["ui"]["text"][0]
    with pytest.raises(ValueError, match="unknown; allowed"):
        node.build("lru")


def test_model_loader_shows_what_the_model_was_trained_with(N):
    shown = N["SaltModelLoader"]().load("(embedded default)")["ui"]["text"][0]
    assert shown.startswith("embedded-default: trained with causal, chunks of 3 latent frames, 4 steps")
    assert "cache sink 3 + window 3, cache_relative positions" in shown


# ---- sampler ----------------------------------------------------------------------------------------------------

def test_sampler_output_is_raw_vae_space_of_the_pipeline(N, model, cond):
    from salt_core.pipeline import generate_latents

    from salt_core.sampling.settings import SamplingOverrides

    pol = N["SaltCachePolicy"]().build("sink_window", 2, 1)[0]
    out = N["SaltSampler"]().sample(model, 32, 32, 13, seed=3, chunk_frames=1, conditioning=cond,
                                    cache_policy=pol)[0]["samples"]
    want = generate_latents(model, cond[0][0], width=32, height=32, frames=13, seed=3,
                            overrides=SamplingOverrides(chunk_frames=1, cache=pol))
    assert out.shape == (1, 16, 4, 4, 4) and out.device.type == "cpu"
    torch.testing.assert_close(out, model.to_raw_latents(want))


def test_sampler_reports_each_chunk_with_a_preview(N, model, cond, fake_comfy):
    latent = N["SaltSampler"]().sample(model, 32, 32, 9, chunk_frames=1, conditioning=cond)[0]
    values = [(v, t) for v, t, _ in fake_comfy["progress"]]
    assert values == [(1, 3), (2, 3), (3, 3)]
    kind, image, size = fake_comfy["progress"][-1][2]
    assert kind == "JPEG" and image.size == (32, 32) and size > 0
    # the previews follow the stream (32 px is under the preview size): the last one is the video's last frame
    import numpy as np

    from salt_core.video_io import to_uint8_frames

    frames = N["SaltDecode"]().decode(latent, model.vae)[0]
    want = to_uint8_frames(frames[-1:])[0].numpy().astype(int)
    assert np.abs(np.asarray(image).astype(int) - want).max() <= 1


def test_sampler_cfg_guides_with_the_negative_prompt_as_the_pipeline_does(N, model, cond):
    from salt_core.pipeline import generate_latents
    from salt_core.sampling import Guidance
    from salt_core.sampling.settings import SamplingOverrides

    neg = N["SaltTextEncode"]().encode(model, "a blue square")
    neg = neg["result"][0] if isinstance(neg, dict) else neg[0]
    guided = N["SaltSampler"]().sample(model, 32, 32, 9, seed=3, conditioning=cond, negative=neg, cfg=3.0)[0]
    plain = N["SaltSampler"]().sample(model, 32, 32, 9, seed=3, conditioning=cond, negative=neg)[0]  # cfg 1: unused
    unguided = N["SaltSampler"]().sample(model, 32, 32, 9, seed=3, conditioning=cond)[0]
    torch.testing.assert_close(plain["samples"], unguided["samples"], rtol=0, atol=0)
    want = generate_latents(model, cond[0][0], width=32, height=32, frames=9, seed=3, overrides=SamplingOverrides(),
                            guidance=Guidance(3.0, neg[0][0]))
    torch.testing.assert_close(guided["samples"], model.to_raw_latents(want.float()), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(guided["samples"], plain["samples"], atol=1e-3)


@pytest.mark.parametrize("cfg, negative, message", [
    (3.0, None, r"cfg 3 needs a negative prompt: connect `negative`"),
    (0.5, None, r"cfg must be a number from 1 \(no guidance\) to 30, got 0.5"),
    (2.0, [[torch.zeros(1, 4, 7), {}]], r"negative: 7-dim embeddings, but model .* expects"),
])
def test_sampler_refuses_a_guidance_it_cannot_run_before_sampling(N, model, cond, cfg, negative, message,
                                                                   monkeypatch):
    import salt_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "stream_latents", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(ValueError, match=message):
        N["SaltSampler"]().sample(model, 32, 32, 9, conditioning=cond, negative=negative, cfg=cfg)


def test_sampler_stops_when_comfyui_interrupts(N, model, cond, fake_comfy):
    fake_comfy["interrupt_at"] = 2
    with pytest.raises(Interrupted):
        N["SaltSampler"]().sample(model, 32, 32, 17, chunk_frames=1, conditioning=cond)
    assert [v for v, _, _ in fake_comfy["progress"]] == [1, 2]


def test_sampler_follows_a_prompt_schedule(N, model, cond):
    other = N["SaltTextEncode"]().encode(model, "a blue square moves right")
    other = other["result"][0] if isinstance(other, dict) else other[0]
    s = N["SaltPromptSchedule"]().build(cond, 0)[0]
    s = N["SaltPromptSchedule"]().build(other, 8, previous=s)[0]
    switched = N["SaltSampler"]().sample(model, 32, 32, 17, chunk_frames=1, schedule=s)[0]["samples"]
    plain = N["SaltSampler"]().sample(model, 32, 32, 17, chunk_frames=1, conditioning=cond)[0]["samples"]
    # frame 8 -> latent frame 2: the first two latent frames are the same, the rest differ
    torch.testing.assert_close(switched[:, :, :2], plain[:, :, :2])
    assert not torch.allclose(switched[:, :, 2:], plain[:, :, 2:])


def test_sampler_bidirectional_model_samples_the_whole_clip(N, cond, tmp_path, fake_comfy):
    path = save_tiny_dit(tmp_path / "bidi.safetensors", causal=False)
    m = outputs(N["SaltModelLoader"]().load(path, device="cpu"))[0]
    out = N["SaltSampler"]().sample(m, 32, 32, 9, steps=2, conditioning=cond)[0]["samples"]
    assert out.shape == (1, 16, 3, 4, 4)
    assert [(v, t) for v, t, _ in fake_comfy["progress"]] == [(1, 1)]
    two = N["SaltPromptSchedule"]().build(cond, 0)[0].with_entry(8, cond[0][0])
    with pytest.raises(ValueError, match="bidirectional"):
        N["SaltSampler"]().sample(m, 32, 32, 9, schedule=two)


@pytest.mark.parametrize("kwargs, message", [
    (dict(frames=16), "4k\\+1"),
    (dict(width=40), "multiple of 16"),
    (dict(frames=9, chunk_frames=2), "does not divide"),
    (dict(steps=3), "allowed step counts"),
    (dict(timesteps="1000, x"), "numbers separated by commas"),
])
def test_sampler_explains_what_the_model_cannot_do(N, model, cond, kwargs, message):
    args = dict(width=32, height=32, frames=9, chunk_frames=1, conditioning=cond) | kwargs
    with pytest.raises(ValueError, match=message):
        N["SaltSampler"]().sample(model, **args)


def test_sampler_takes_core_umt5_conditioning(N, tmp_path):
    """CLIPTextEncode (umT5) gives [[Tensor [1, >=512, 4096], {"pooled_output": None}]]."""
    from salt_core.checkpoints import save_dit
    from salt_core.config import DiTConfig, SamplingDefaults
    from salt_core.dit import WanDiT

    path = save_dit(tmp_path / "wan_like.safetensors", WanDiT(DiTConfig(dim=64, ffn_dim=128, num_heads=2,
                                                                        num_layers=1, text_dim=4096)),
                    SamplingDefaults(causal=True, chunk_frames=1))
    m = outputs(N["SaltModelLoader"]().load(str(path)))[0]
    umt5 = [[torch.randn(1, 512, 4096) * (torch.arange(512) < 7).view(1, 512, 1), {"pooled_output": None}]]
    out = N["SaltSampler"]().sample(m, 32, 16, 5, conditioning=umt5)[0]["samples"]
    assert out.shape == (1, 16, 2, 2, 4) and torch.isfinite(out).all()
    # the zero padding is what the DiT pads with itself: the 7 real tokens alone sample the same latents
    seven = [[umt5[0][0][:, :7].clone(), {"pooled_output": None}]]
    torch.testing.assert_close(N["SaltSampler"]().sample(m, 32, 16, 5, conditioning=seven)[0]["samples"], out)
    other = [[umt5[0][0][:, :7] * -1, {"pooled_output": None}]]
    assert not torch.allclose(N["SaltSampler"]().sample(m, 32, 16, 5, conditioning=other)[0]["samples"], out)


def test_sampler_explains_a_text_encoder_mismatch(N, model):
    umt5 = [[torch.zeros(1, 512, 4096), {"pooled_output": None}]]
    with pytest.raises(ValueError, match="4096-dim embeddings.*SaltTextEncode"):
        N["SaltSampler"]().sample(model, 32, 32, 9, conditioning=umt5)
    with pytest.raises(ValueError, match=r"conditioning \(SaltTextEncode / CLIPTextEncode\) or a prompt schedule"):
        N["SaltSampler"]().sample(model, 32, 32, 9)


# ---- decode and save ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vae(N):
    return N["SaltVAELoader"]().load("(embedded default)")[0]


def test_decode_streams_to_the_full_decode(N, vae):
    torch.manual_seed(0)
    z = torch.randn(2, 16, 2, 2, 3)
    images = N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1)[0]
    with torch.no_grad():
        full = vae.decode(z)  # [2, 3, 5, 16, 24]
    assert images.shape == (10, 16, 24, 3) and images.dtype == torch.float32
    want = ((full.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).reshape(10, 16, 24, 3)
    torch.testing.assert_close(images, want, atol=1e-5, rtol=1e-4)


def test_a_tiled_decode_matches_the_untiled_one_and_bad_tiles_are_refused_before_decoding(N, vae, monkeypatch):
    from salt_core.vae import min_tile

    torch.manual_seed(1)
    z = torch.randn(1, 16, 2, 4, 44)  # 44 latent cells wide: 3 tiles of the smallest size
    smallest = min_tile(vae)
    plain = N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1)[0]
    tiled = N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1, tile=smallest, tile_overlap=8)[0]
    # a budget below the untiled decode's estimate: the largest tiles that fit
    budgeted = N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1, memory_budget_mb=28)[0]
    assert tiled.shape == plain.shape == budgeted.shape == (5, 32, 352, 3)
    assert (tiled - plain).abs().max() < 0.02 and (tiled - plain).abs().mean() < 2e-3
    assert (budgeted - plain).abs().max() < 0.02
    assert not torch.equal(tiled, plain) and not torch.equal(budgeted, plain)  # both tiled: the seams differ a little

    from salt_core.vae.model import Decoder3d

    def no_decode(*args, **kwargs):
        raise AssertionError("decoding started")

    monkeypatch.setattr(Decoder3d, "trunk", no_decode)
    with pytest.raises(ValueError,
                       match=rf"SaltDecode \(tile=4.*smaller than the decoder's receptive field.*>= {smallest}"):
        N["SaltDecode"]().decode({"samples": z}, vae, tile=4)
    with pytest.raises(ValueError, match=r"memory_budget_mb=1\).*too small.*allowed: budget >="):
        N["SaltDecode"]().decode({"samples": z}, vae, memory_budget_mb=1)
    with pytest.raises(ValueError, match="tile_overlap must be an integer >= 0"):
        N["SaltDecode"]().decode({"samples": z}, vae, tile_overlap=-1)


class ComfyVAE:
    """Stand-in for ComfyUI's `comfy.sd.VAE` around a Wan 2.1 VAE, with its decode contract (comfy/sd.py):
    `decode(samples)` takes raw-space latents [B, 16, T, h, w], runs `first_stage_model.decode`, maps
    [-1, 1] to 0..1 with its own `process_output` (clamp((x + 1) / 2, 0, 1)) and returns float32
    [B, 1 + 4(T-1), 8h, 8w, 3] (channels moved last)."""

    def __init__(self, first_stage_model, latent_channels=None, latent_dim=3):
        self.first_stage_model = first_stage_model
        self.latent_channels = latent_channels or first_stage_model.config.z_dim
        self.latent_dim = latent_dim
        self.decoded = []  # the latents each decode call received

    @staticmethod
    def process_output(image):
        return torch.clamp((image + 1.0) / 2.0, min=0.0, max=1.0)

    @torch.no_grad()
    def decode(self, samples_in):
        self.decoded.append(samples_in)
        model = self.first_stage_model
        out = self.process_output(model.decode(samples_in.to(model.dtype)).float())  # [B, 3, N, H, W]
        return out.movedim(1, -1)


@pytest.fixture(scope="module")
def wan_vae():
    """A tiny Wan VAE with random weights and non-identity latent statistics (so a wrongly
    (de)normalised latent would decode differently)."""
    import dataclasses

    from salt_core.vae import WanVAE, vae_preset

    torch.manual_seed(4)
    cfg = vae_preset("tiny")
    cfg = dataclasses.replace(cfg, latent_mean=tuple(0.1 * (i - 8) for i in range(cfg.z_dim)),
                              latent_std=tuple(0.5 + 0.1 * i for i in range(cfg.z_dim)))
    vae = WanVAE(cfg).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vae


def test_decode_with_comfyuis_vae_gives_the_frames_of_our_own_decode(N, wan_vae):
    z = torch.randn(2, 16, 3, 2, 3, generator=torch.Generator().manual_seed(7))  # raw VAE space
    core = ComfyVAE(wan_vae)
    images = N["SaltDecode"]().decode({"samples": z}, core)[0]
    ours = N["SaltDecode"]().decode({"samples": z}, wan_vae, chunk_frames=1)[0]
    [given] = core.decoded
    assert torch.equal(given, z)  # raw latents, handed over unchanged
    assert images.shape == ours.shape == (2 * 9, 16, 24, 3) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.01
    torch.testing.assert_close(images, ours, atol=1e-5, rtol=1e-4)


def test_decode_refuses_an_incompatible_vae(N, vae):
    with pytest.raises(ValueError, match="incompatible VAE.*4-channel image"):
        N["SaltDecode"]().decode({"samples": torch.zeros(1, 16, 1, 2, 2)}, ComfyVAE(vae, latent_channels=4, latent_dim=2))
    with pytest.raises(ValueError, match="incompatible VAE.*z_dim"):
        N["SaltDecode"]().decode({"samples": torch.zeros(1, 4, 1, 2, 2)}, vae)
    with pytest.raises(ValueError, match="video LATENT"):
        N["SaltDecode"]().decode({"samples": torch.zeros(1, 4, 8, 8)}, vae)


def test_save_video_writes_an_mp4_the_ui_can_show(N, fake_comfy, tmp_path):
    from salt_core.video_io import read_mp4

    frames = torch.rand(9, 32, 48, 3)
    node = N["SaltSaveVideo"]()
    ui = node.save(frames, 16.0, "salt/test", 23)["ui"]
    assert ui["animated"] == (True,)
    [entry] = ui["images"]
    assert entry == {"filename": "test_00001_.mp4", "subfolder": "salt", "type": "output"}
    video, fps = read_mp4(tmp_path / "output" / "salt" / entry["filename"])
    assert video.shape == (9, 32, 48, 3) and fps == 16.0
    assert node.save(frames, 16.0, "salt/test", 23)["ui"]["images"][0]["filename"] == "test_00002_.mp4"


def test_save_video_without_comfyui_uses_salt_output_dir(N, monkeypatch, tmp_path):
    monkeypatch.setenv("SALT_OUTPUT_DIR", str(tmp_path))
    ui = N["SaltSaveVideo"]().save(torch.rand(1, 16, 16, 3), 8.0, "clip", 30)["ui"]
    assert (tmp_path / ui["images"][0]["filename"]).is_file()
    with pytest.raises(ValueError, match="IMAGE"):
        N["SaltSaveVideo"]().save(torch.rand(3, 16, 16), 8.0, "clip", 30)

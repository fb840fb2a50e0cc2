"""SaltModelLoader with families: the family and weights inputs, a Salt-LL-layout file loading its regular weights
with the trained sink / window, a world-chain checkpoint bringing the VAE and text encoder it was trained with, and
a family that contradicts the file refused with the file's name."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from salt_core.checkpoints import CheckpointError
from salt_core.config import dit_preset
from salt_core.dit import WanDiT
from salt_core.families import FAMILIES
from salt_core.kv_cache import CachePolicy
from salt_core.pipeline import DEFAULT_ASSETS

from test_nodes import N, fake_comfy, outputs  # noqa: F401  (fixtures: the node classes, a fake ComfyUI)

WORLD = Path(__file__).resolve().parents[1] / "benchmarks" / "quality" / "checkpoints" / "salt-ar.safetensors"


def salt_ll_layout(folder: Path) -> tuple[Path, WanDiT, WanDiT]:
    """A tiny model in the layout of Salt's salt_ll.pt: {generator, generator_ema}, keys prefixed model."""
    torch.manual_seed(5)
    regular, ema = WanDiT(dit_preset("tiny")), WanDiT(dit_preset("tiny"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "salt_ll.pt"
    torch.save({e: {"model." + k: v.clone() for k, v in m.state_dict().items()}
                for e, m in (("generator", regular), ("generator_ema", ema))}, path)
    return path, regular, ema


def test_the_loader_offers_every_family_and_the_weights_choice(N):
    optional = N["SaltModelLoader"].INPUT_TYPES()["optional"]
    assert optional["family"][0] == ["auto", *FAMILIES] and optional["weights"][0] == ["auto", "ema", "regular"]


def test_a_salt_ll_layout_file_loads_its_regular_weights_with_the_trained_sink_and_window(N, fake_comfy, tmp_path):
    _, regular, ema = salt_ll_layout(tmp_path / "models" / "diffusion_models")
    ret = N["SaltModelLoader"]().load("salt_ll.pt", device="cpu", offload=False)
    model = outputs(ret)[0]
    assert model.family == "salt-ll"
    assert model.sampling.cache == CachePolicy("sink_window", window_frames=6, sink_frames=3)
    assert all(torch.equal(a, b) for a, b in zip(model.dit.state_dict().values(), regular.state_dict().values()))
    shown = ret["ui"]["text"]
    assert "family salt-ll" in shown[0] and "sink 3 + window 6" in shown[0]
    assert any("its folder and file name 'diffusion_models/salt_ll.pt' say so" in t for t in shown)
    forced = outputs(N["SaltModelLoader"]().load("salt_ll.pt", device="cpu", offload=False, weights="ema"))[0]
    assert all(torch.equal(a, b) for a, b in zip(forced.dit.state_dict().values(), ema.state_dict().values()))


def test_a_family_that_contradicts_the_file_is_refused_naming_it(N, fake_comfy, tmp_path):
    path, _, _ = salt_ll_layout(tmp_path / "models" / "diffusion_models")
    shutil.copy(WORLD, path.parent / "salt-ar.safetensors")
    with pytest.raises(CheckpointError, match=r"salt-ar\.safetensors: family 'causal-forcing-framewise' contradicts"):
        N["SaltModelLoader"]().load("salt-ar.safetensors", family="causal-forcing-framewise")
    with pytest.raises(ValueError, match="family / weights apply to a checkpoint file"):
        N["SaltModelLoader"]().load("(embedded default)", family="salt-ll")


def test_a_world_chain_checkpoint_brings_its_vae_and_text_encoder(N, fake_comfy, tmp_path):
    folder = tmp_path / "models" / "diffusion_models"
    folder.mkdir(parents=True)
    shutil.copy(WORLD, folder / "salt-ar.safetensors")
    model = outputs(N["SaltModelLoader"]().load("salt-ar.safetensors", device="cpu", offload=False))[0]
    assert model.vae is not None and model.text_encoder is not None
    assert model.latent_format is not None and model.latent_format.matches(model.vae.config.latent_format)
    cond = outputs(N["SaltTextEncode"]().encode(model, "a red circle moves left"))[0]
    assert cond[0][0].shape[-1] == model.dit.config.text_dim
    assert any(str(DEFAULT_ASSETS / "vae.safetensors") in n for n in model.notes)

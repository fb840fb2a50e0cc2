"""The embedded-default bundle (salt_core/assets/default: dit + vae + text encoder) loads without a
checkpoint argument, generates a clip from a prompt and reports unknown words.

The test builds a bundle of the same kind and sizes with random weights in a temp folder and points the
pipeline at it, so it checks the loading path whatever is committed; tests/test_committed_default.py checks
the committed (trained) bundle itself."""
from __future__ import annotations

import warnings

import pytest
import torch

import salt_core.pipeline as pipeline
from salt_core.checkpoints import save_dit, save_vae
from salt_core.cli import main
from salt_core.config import SamplingDefaults, dit_preset
from salt_core.dit import WanDiT
from salt_core.text import TextEncoder, TextEncoderConfig, UnknownWordsWarning
from salt_core.text.io import save_text_encoder
from salt_core.vae import WanVAE, vae_preset
from training.world import vocabulary


@pytest.fixture
def saved():
    """The modules written into the bundle, every weight moved off its initial value."""
    torch.manual_seed(0)
    modules = {"dit": WanDiT(dit_preset("tiny")), "vae": WanVAE(vae_preset("tiny")),
               "text_encoder": TextEncoder(TextEncoderConfig(pad_to=32), vocabulary())}
    with torch.no_grad():
        for module in modules.values():
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return modules


@pytest.fixture
def bundle(tmp_path, monkeypatch, saved):
    folder = tmp_path / "default"
    sampling = SamplingDefaults(causal=True, chunk_frames=3, shift=5.0, timesteps=(1000.0, 750.0, 500.0, 250.0))
    save_dit(folder / "dit.safetensors", saved["dit"], sampling)
    save_vae(folder / "vae.safetensors", saved["vae"])
    save_text_encoder(folder / "text_encoder.safetensors", saved["text_encoder"])
    monkeypatch.setattr(pipeline, "DEFAULT_ASSETS", folder)
    return folder


def test_bundle_is_small_and_loads_without_a_path(bundle, saved):
    assert sum(f.stat().st_size for f in bundle.iterdir()) <= 25 * 2**20
    model = pipeline.load_salt_model(None)
    assert model.source == str(bundle) and model.name == "embedded-default" and model.notes == ()
    assert model.sampling.causal and model.dit.config.text_dim == model.text_encoder.config.text_dim
    for name, want in saved.items():  # every tensor of the three files, as saved
        got = getattr(model, name).state_dict()
        assert got.keys() == want.state_dict().keys(), name
        for k, v in want.state_dict().items():
            assert torch.equal(got[k], v), f"{name}.{k}"


def test_generate_uses_the_bundle_and_reports_unknown_words(bundle, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownWordsWarning)
        code = main(["generate", "--prompt", "a red zebra moves to the right", "--out", str(out),
                     "--frames", "9", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0 and out.is_file() and out.stat().st_size > 0
    assert "unknown to the text encoder" in captured.err and "zebra" in captured.err
    assert "RANDOMLY" not in captured.err and "embedded-default" in captured.out


def test_the_bundled_text_encoder_returns_unknown_words(bundle):
    enc = pipeline.load_salt_model(None).text_encoder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb, unknown = enc.encode(["a red circle moves to the right", "a glorp square"])
    assert unknown == [[], ["glorp"]] and emb.shape[0] == 2 and torch.isfinite(emb).all()
    assert any(issubclass(w.category, UnknownWordsWarning) for w in caught)

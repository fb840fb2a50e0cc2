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
def bundle(tmp_path, monkeypatch):
    folder = tmp_path / "default"
    torch.manual_seed(0)
    sampling = SamplingDefaults(causal=True, chunk_frames=3, shift=5.0, timesteps=(1000.0, 750.0, 500.0, 250.0))
    save_dit(folder / "dit.safetensors", WanDiT(dit_preset("tiny")), sampling)
    save_vae(folder / "vae.safetensors", WanVAE(vae_preset("tiny")))
    save_text_encoder(folder / "text_encoder.safetensors", TextEncoder(TextEncoderConfig(pad_to=32), vocabulary()))
    monkeypatch.setattr(pipeline, "DEFAULT_ASSETS", folder)
    return folder


def test_bundle_is_small_and_loads_without_a_path(bundle):
    assert sum(f.stat().st_size for f in bundle.iterdir()) <= 25 * 2**20
    model = pipeline.load_salt_model(None)
    assert model.source == str(bundle) and model.name == "embedded-default" and model.notes == ()
    assert model.sampling.causal and model.text_encoder is not None and model.vae is not None
    assert model.dit.config.text_dim == model.text_encoder.config.text_dim


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

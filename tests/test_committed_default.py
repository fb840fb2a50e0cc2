"""The committed embedded default (salt_core/assets/default): small enough to ship, loads with no
checkpoint argument, streams under the cache policy it was trained with, and draws what the prompt asks
for — judged by the world's analytic judge on the clip `python -m salt_core generate` would make.

Skips when no bundle is committed (tests/test_embedded_default.py covers the loading path with a temp one)."""
from __future__ import annotations

import pytest
import torch

import salt_core.pipeline as pipeline
from salt_core.pipeline import decode_stream, encode_prompt, stream_latents

BUNDLE = pipeline.DEFAULT_ASSETS
pytestmark = pytest.mark.skipif(not (BUNDLE / "dit.safetensors").is_file(),
                                reason=f"no embedded default committed in {BUNDLE}")


@pytest.fixture(scope="module")
def model():
    return pipeline.load_salt_model(None)


def test_bundle_size_and_contents(model):
    files = {f.name: f.stat().st_size for f in BUNDLE.iterdir() if f.is_file()}
    assert {"dit.safetensors", "vae.safetensors", "text_encoder.safetensors"} <= set(files)
    assert sum(files.values()) <= 25 * 2**20
    assert model.name == "embedded-default" and model.notes == ()
    assert model.sampling.causal and model.trained_policy is not None and model.trained_policy.kind == "window"


def _clip(model, prompt: str, seed: int) -> torch.Tensor:
    ctx, unknown = encode_prompt(model, prompt)
    assert unknown == []
    chunks = (c.latents for c in stream_latents(model, ctx, width=64, height=64, frames=33, seed=seed))
    return torch.cat(list(decode_stream(model, model.vae, chunks)), dim=0)  # [T, H, W, 3] in 0..1


def test_default_follows_the_prompted_background(model):
    """What the committed default reliably learnt (benchmarks/quality/README.md: its tiny VAE limits the objects):
    the background the prompt names. Same seeds, only the background words differ."""
    torch.set_num_threads(1)
    brightness = {}
    for background in ("grey", "black"):
        prompt = f"a red circle moves to the right on a {background} background"
        brightness[background] = sum(float(_clip(model, prompt, seed).mean()) for seed in range(2)) / 2
    assert brightness["grey"] > brightness["black"] + 0.15, brightness

"""Attention backends: SDPA by default; an unusable backend falls back and says from what and why."""
import logging

import pytest
import torch

from salt_core.dit.attention import BACKENDS, Attention, available_backends, sdpa


def qkv():
    return torch.randn(1, 2, 6, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)


def test_sdpa_is_default_and_exact():
    q, k, v = qkv()
    attn = Attention()
    assert attn.active == "sdpa" and "sdpa" in available_backends()
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1) @ v
    assert torch.allclose(attn(q, k, v), ref, atol=1e-6)


def test_mask_is_honoured():
    q, k, v = qkv()
    mask = torch.zeros(6, 9, dtype=torch.bool)
    mask[:, :3] = True
    out = Attention()(q, k, v, mask)
    assert torch.allclose(out, sdpa(q, k[:, :, :3], v[:, :, :3]), atol=1e-6)


@pytest.mark.parametrize("backend", ["sage", "flash"])
def test_unusable_backend_falls_back_with_a_message(backend, caplog):
    q, k, v = qkv()
    with caplog.at_level(logging.WARNING, logger="salt.attention"):
        attn = Attention(backend)
        out = attn(q, k, v)
        attn(q, k, v)
    assert torch.allclose(out, sdpa(q, k, v), atol=1e-6)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs and all(f"falling back from '{backend}' to 'sdpa'" in m for m in msgs)
    assert len(msgs) == len(set(msgs))  # each reason reported once, not per call


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match=rf"allowed: {list(BACKENDS)!r}".replace("[", r"\[").replace("]", r"\]")):
        Attention("xformers")


def test_model_backend_is_selectable(tiny_dit):
    tiny_dit.set_attention_backend("flash")
    x, t, ctx = torch.randn(1, 16, 1, 4, 4), torch.tensor([10.0]), torch.randn(1, 3, 32)
    with torch.no_grad():
        a = tiny_dit(x, t, ctx)
        tiny_dit.set_attention_backend("sdpa")
        assert torch.allclose(a, tiny_dit(x, t, ctx), atol=1e-6)

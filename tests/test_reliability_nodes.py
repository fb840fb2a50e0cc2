"""SaltDecode / SaltSaveVideo on bad input: one clear error before anything big is allocated or any file is
written (ComfyUI shows the message on the node)."""
from __future__ import annotations

import os

import pytest
import torch

from test_nodes import N, load_pack, vae  # noqa: F401  (fixtures: the node classes, the embedded VAE)


@pytest.fixture
def video_module():
    return load_pack().nodes.video


@pytest.fixture
def no_big_allocations(monkeypatch):
    """torch.empty of more than 1 GiB fails the test (the size must be checked before allocating)."""
    real = torch.empty

    def guarded(*size, **kw):
        gib = torch.Size(size[0] if len(size) == 1 and not isinstance(size[0], int) else size).numel() * 4 / 2**30
        assert gib < 1, f"allocated {gib:.1f} GiB before checking the size"
        return real(*size, **kw)

    monkeypatch.setattr(torch, "empty", guarded)


@pytest.mark.parametrize("chunk", [0, -1, 1.5])
def test_decode_refuses_a_chunk_size_below_one(N, vae, chunk):
    with pytest.raises(ValueError, match=r"chunk_frames must be an integer >= 1 .*got"):
        N["SaltDecode"]().decode({"samples": torch.zeros(1, 16, 3, 2, 2)}, vae, chunk_frames=chunk)


def test_decode_refuses_a_video_too_big_for_memory_before_allocating(N, vae, video_module, monkeypatch,
                                                                      no_big_allocations):
    monkeypatch.setattr(video_module, "free_ram_bytes", lambda: 16 << 30)
    z = torch.zeros(1, 16, 1, 8, 8).expand(1, 16, 200_000, 8, 8)  # 200000 latent frames, no memory of its own
    with pytest.raises(ValueError) as info:
        N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1)
    msg = str(info.value)
    assert "799997 frames of 64x64 (36.6 GiB of float32)" in msg and "50% of the 16.0 GiB of free memory" in msg
    assert "python -m salt_core generate" in msg  # what to do instead


def test_decode_within_the_memory_bound_still_works(N, vae, video_module, monkeypatch):
    monkeypatch.setattr(video_module, "free_ram_bytes", lambda: 16 << 30)
    images = N["SaltDecode"]().decode({"samples": torch.zeros(1, 16, 2, 2, 2)}, vae, chunk_frames=1)[0]
    assert images.shape == (5, 16, 16, 3)


@pytest.mark.parametrize("z, message", [
    (torch.full((1, 16, 2, 2, 2), float("nan")), "the LATENT's samples contain NaN or inf"),
    (torch.zeros(1, 16, 2, 2, 2, dtype=torch.long), "must be floating point"),
    (torch.zeros(1, 16, 0, 2, 2), "the LATENT is empty"),
])
def test_decode_refuses_latents_that_cannot_make_a_video(N, vae, z, message):
    with pytest.raises(ValueError, match=message):
        N["SaltDecode"]().decode({"samples": z}, vae, chunk_frames=1)


@pytest.mark.parametrize("args, message", [
    ((torch.full((2, 16, 16, 3), float("nan")),), "images: contains NaN"),
    ((torch.rand(2, 16, 16, 3) * 4 - 2,), r"images: float values span"),
    ((torch.zeros(0, 16, 16, 3),), "images: the IMAGE has no frames"),
    ((torch.ones(2, 16, 16, 3, dtype=torch.int64),), "images: dtype must be"),
    ((torch.rand(2, 16, 16, 3), 16.0, ""), "filename_prefix must name a file"),
    ((torch.rand(2, 16, 16, 3), 16.0, "a\0b"), "filename_prefix must name a file"),
    ((torch.rand(2, 16, 16, 3), 16.0, "notes/clip"), r"notes is a file, not a folder"),
])
def test_save_video_refuses_garbage_and_writes_nothing(N, monkeypatch, tmp_path, args, message):
    monkeypatch.setenv("SALT_OUTPUT_DIR", str(tmp_path))
    (tmp_path / "notes").write_text("a file where a folder is asked for")
    with pytest.raises(ValueError, match=message):
        N["SaltSaveVideo"]().save(*args)
    assert not any(f for _, _, files in os.walk(tmp_path) for f in files if f != "notes")

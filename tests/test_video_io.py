"""Video IO: MP4 / PNG round trips, streaming, atomic writes, and clear errors on bad input."""
import gc
import math
import os
import weakref

import numpy as np
import pytest
import torch

from salt_core.video_io import (
    frames_from_model_space,
    frames_to_model_space,
    read_mp4,
    read_png_frames,
    to_uint8_frames,
    write_mp4,
    write_png_frames,
)

T, H, W = 8, 40, 48  # even, and deliberately not multiples of 16


def smooth_clip(t=T, h=H, w=W) -> torch.Tensor:
    """Float 0..1 [t, h, w, 3]: slowly moving colour gradients (easy for H.264)."""
    ts = torch.arange(t).view(t, 1, 1).float()
    ys = torch.linspace(0, 1, h).view(1, h, 1)
    xs = torch.linspace(0, 1, w).view(1, 1, w)
    r = 0.5 + 0.4 * torch.sin(2 * math.pi * (xs + 0.05 * ts))
    g = 0.5 + 0.4 * torch.cos(2 * math.pi * (ys - 0.03 * ts))
    b = (0.2 + 0.6 * (xs + ys) / 2).expand(t, h, w)
    return torch.stack(torch.broadcast_tensors(r, g, b), dim=-1)


def chunked(x, sizes):
    start = 0
    for n in sizes:
        yield x[start:start + n]
        start += n


# ----------------------------------------------------------------------------- MP4

def test_mp4_round_trip_keeps_count_size_fps_and_pixels(tmp_path):
    clip = smooth_clip()
    path, n = write_mp4(tmp_path / "a.mp4", clip, fps=12)
    assert path == str(tmp_path / "a.mp4") and n == T
    frames, fps = read_mp4(path)
    assert frames.dtype == torch.uint8 and frames.shape == (T, H, W, 3)
    assert fps == pytest.approx(12)
    diff = frames.float() - to_uint8_frames(clip).float()
    assert diff.abs().mean() < 3.0, f"mean abs error {diff.abs().mean():.2f} levels (crf 19: ~2)"
    assert diff.mean().abs() < 1.0, f"colour bias {diff.mean():.2f} levels (matrix/range mismatch?)"


def test_mp4_keeps_fractional_fps(tmp_path):
    write_mp4(tmp_path / "a.mp4", smooth_clip(t=3), fps=24000 / 1001)
    assert read_mp4(tmp_path / "a.mp4")[1] == pytest.approx(23.976, abs=0.01)


def test_mp4_streamed_chunks_equal_one_shot(tmp_path):
    clip = smooth_clip()
    write_mp4(tmp_path / "one.mp4", clip)
    _, n = write_mp4(tmp_path / "stream.mp4", chunked(clip, [3, 1, 0, 4]))
    assert n == T
    assert torch.equal(read_mp4(tmp_path / "one.mp4")[0], read_mp4(tmp_path / "stream.mp4")[0])


def test_mp4_accepts_uint8_and_numpy(tmp_path):
    u8 = to_uint8_frames(smooth_clip(t=2))
    _, n = write_mp4(tmp_path / "a.mp4", u8.numpy())
    frames = read_mp4(tmp_path / "a.mp4")[0]
    assert n == 2 and frames.shape == (2, H, W, 3)
    assert (frames.float() - u8.float()).abs().mean() < 3.0  # the same pixels, up to H.264 (crf 19: ~2 levels)


def test_mp4_streaming_does_not_hold_consumed_chunks(tmp_path):
    refs = []

    def gen():
        for i in range(5):
            alive = sum(r() is not None for r in refs[:-1])  # all but the previous chunk
            assert alive == 0, f"{alive} old chunks still referenced while producing chunk {i}"
            chunk = smooth_clip(t=2).to(torch.float64)
            refs.append(weakref.ref(chunk))
            yield chunk
            del chunk
            gc.collect()

    assert write_mp4(tmp_path / "a.mp4", gen())[1] == 10


def test_mp4_pad_odd_repeats_last_row_and_column(tmp_path):
    clip = smooth_clip(t=2, h=33, w=47)
    write_mp4(tmp_path / "a.mp4", clip, pad_odd=True)
    frames, _ = read_mp4(tmp_path / "a.mp4")
    assert frames.shape == (2, 34, 48, 3)
    f, want = frames.float(), to_uint8_frames(clip).float()
    assert (f[:, :33, :47] - want).abs().mean() < 3.0  # the picture itself, up to H.264
    # the added row / column repeat the last one (one line of 4:2:0 chroma is coarser: ~4 levels; a black
    # or mirrored pad is tens of levels off)
    assert (f[:, 33, :47] - want[:, 32]).abs().mean() < 8.0
    assert (f[:, :33, 47] - want[:, :, 46]).abs().mean() < 8.0


def test_mp4_creates_missing_parent_folder(tmp_path):
    path, _ = write_mp4(tmp_path / "x" / "y" / "a.mp4", smooth_clip(t=1))
    assert os.path.isfile(path)


# ----------------------------------------------------------------------------- atomic writes

def failing_stream(clip):
    yield clip[:2]
    yield clip[2:4]
    raise RuntimeError("decoder exploded")


def test_mp4_failure_midway_leaves_no_file_and_no_temp(tmp_path):
    with pytest.raises(RuntimeError, match="decoder exploded"):
        write_mp4(tmp_path / "a.mp4", failing_stream(smooth_clip()))
    assert os.listdir(tmp_path) == []


def test_mp4_failure_midway_keeps_existing_file(tmp_path):
    target = tmp_path / "a.mp4"
    target.write_bytes(b"previous video")
    with pytest.raises(RuntimeError, match="decoder exploded"):
        write_mp4(target, failing_stream(smooth_clip()))
    assert target.read_bytes() == b"previous video"
    assert os.listdir(tmp_path) == ["a.mp4"]


def test_mp4_bad_chunk_midway_leaves_nothing(tmp_path):
    clip = smooth_clip()
    bad = clip[4:].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"chunk 1.*NaN"):
        write_mp4(tmp_path / "a.mp4", iter([clip[:4], bad]))
    assert os.listdir(tmp_path) == []


def test_mp4_overwrites_existing_file_on_success(tmp_path):
    target = tmp_path / "a.mp4"
    target.write_bytes(b"old")
    write_mp4(target, smooth_clip(t=2))
    assert read_mp4(target)[0].shape[0] == 2
    assert os.listdir(tmp_path) == ["a.mp4"]


# ----------------------------------------------------------------------------- PNG

def test_png_round_trip_is_exact(tmp_path):
    u8 = to_uint8_frames(smooth_clip(t=3))
    folder, n = write_png_frames(tmp_path / "seq", chunked(u8, [2, 1]))
    assert n == 3
    assert sorted(os.listdir(folder)) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    assert torch.equal(read_png_frames(folder), u8)


def test_png_custom_prefix_and_overwrite_removes_stale_frames(tmp_path):
    u8 = to_uint8_frames(smooth_clip(t=3))
    write_png_frames(tmp_path, u8, prefix="img_")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_png_frames(tmp_path, u8, prefix="img_")
    write_png_frames(tmp_path, u8[:1], prefix="img_", overwrite=True)
    assert os.listdir(tmp_path) == ["img_00000.png"]
    assert torch.equal(read_png_frames(tmp_path, prefix="img_"), u8[:1])


def test_png_read_reports_gaps_and_empty_folders(tmp_path):
    write_png_frames(tmp_path, to_uint8_frames(smooth_clip(t=3)))
    os.remove(tmp_path / "frame_00001.png")
    with pytest.raises(ValueError, match="first missing index is 1"):
        read_png_frames(tmp_path)
    with pytest.raises(ValueError, match="no 'other_NNNNN.png' frames"):
        read_png_frames(tmp_path, prefix="other_")
    with pytest.raises(FileNotFoundError):
        read_png_frames(tmp_path / "missing")


# ----------------------------------------------------------------------------- conversions

def test_model_space_conversions_are_inverse_and_explicit():
    clip = smooth_clip(t=3)
    z = frames_to_model_space(clip)  # [1, 3, T, H, W] in [-1, 1]
    assert z.shape == (1, 3, 3, H, W) and z.min() >= -1 and z.max() <= 1
    assert torch.allclose(frames_from_model_space(z), clip, atol=1e-6)
    assert torch.allclose(frames_from_model_space(z[0]), clip, atol=1e-6)  # [3, T, H, W]
    # batch items are concatenated along time, as ComfyUI's VAEDecode does for video
    assert frames_from_model_space(torch.cat([z, z])).shape == (6, H, W, 3)


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([-0.1, 0.0, 0.5, 1.0, 1.2]).view(1, 1, 5, 1).expand(1, 1, 5, 3)
    assert to_uint8_frames(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("frames, match", [
    (torch.rand(H, W, 3), r"frames: expected shape \[T, H, W, 3\].*single frame"),
    (torch.rand(2, H, W, 4), r"frames: expected shape \[T, H, W, 3\]"),
    (torch.rand(1, 3, 2, H, W), r"frames_from_model_space"),
    (torch.full((2, H, W, 3), float("nan")), r"frames: contains NaN"),
    (torch.zeros(2, H, W, 3, dtype=torch.int64), r"frames: dtype must be uint8"),
    (torch.rand(2, H, W, 3) * 2 - 1, r"frames: float values span.*frames_from_model_space"),
    (torch.rand(0, H, W, 3), r"frames: empty video"),
    (iter([]), r"frames: empty video"),
    (torch.rand(2, 33, W, 3), r"frames: .*even width and height.*48x33.*pad_odd=True"),
    (iter([torch.rand(1, H, W, 3), torch.rand(1, H, W + 2, 3)]), r"frames \(chunk 1\): frame size 50x40"),
])
def test_write_mp4_rejects_bad_frames(tmp_path, frames, match):
    with pytest.raises(ValueError, match=match):
        write_mp4(tmp_path / "a.mp4", frames)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(fps=0), r"fps: must be .*> 0"),
    (dict(fps=-5), r"fps: must be .*> 0"),
    (dict(fps=float("nan")), r"fps: must be"),
    (dict(fps="16"), r"fps: expected a positive number"),
    (dict(crf=60), r"crf: expected an int in 0\.\.51"),
    (dict(preset="turbo"), r"preset: expected one of"),
])
def test_write_mp4_rejects_bad_options(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_mp4(tmp_path / "a.mp4", smooth_clip(t=1), **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["a.avi", "a.gif", "a"])
def test_write_mp4_rejects_other_extensions(tmp_path, name):
    with pytest.raises(ValueError, match=r"path: write_mp4 writes \.mp4"):
        write_mp4(tmp_path / name, smooth_clip(t=1))


def test_write_rejects_non_frame_sources(tmp_path):
    with pytest.raises(TypeError, match="frames: expected a"):
        write_mp4(tmp_path / "a.mp4", "clip.mp4")
    with pytest.raises(ValueError, match="frames: empty video"):
        write_png_frames(tmp_path, iter([]))
    with pytest.raises(ValueError, match="prefix: "):
        write_png_frames(tmp_path, smooth_clip(t=1), prefix="../x")


def test_frames_from_model_space_rejects_wrong_layout():
    with pytest.raises(ValueError, match=r"x: expected model-space shape"):
        frames_from_model_space(torch.rand(2, H, W, 3))
    with pytest.raises(ValueError, match=r"x: contains NaN"):
        frames_from_model_space(torch.full((3, 1, 4, 4), float("nan")))


def test_read_mp4_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_mp4(tmp_path / "missing.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="broken.mp4"):
        read_mp4(tmp_path / "broken.mp4")

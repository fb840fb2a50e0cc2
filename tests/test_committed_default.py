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
    assert model.sampling.causal and model.trained_policy is not None and model.trained_policy.kind == "sink_window"


def _clip(model, prompt: str, seed: int, frames: int = 33) -> torch.Tensor:
    ctx, unknown = encode_prompt(model, prompt)
    assert unknown == []
    chunks = (c.latents for c in stream_latents(model, ctx, width=64, height=64, frames=frames, seed=seed))
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


def test_default_draws_the_prompted_colour(model):
    """On a black background, the pixels that are not background are mostly of the prompted colour: the mean
    colour of the object pixels has its largest channel where the colour word says (the previous default's
    blobs were often of another colour)."""
    torch.set_num_threads(1)
    for colour, channel in (("red", 0), ("green", 1), ("blue", 2)):
        for seed in range(2):
            clip = _clip(model, f"a {colour} circle moves to the right on a black background", seed)
            objects = clip[clip.amax(-1) > 0.3]  # [N, 3]
            assert len(objects) > 0.005 * clip[..., 0].numel(), (colour, seed, len(objects))
            mean = objects.mean(0)
            assert int(mean.argmax()) == channel, (colour, seed, [round(v, 3) for v in mean.tolist()])


def test_default_streams_past_its_training_length_without_a_flash(model):
    """69 frames are 6 chunks, twice the 3 it was trained on. Under a window of 6 latent frames the 4th chunk was
    the first without the video's first frame in its cache, and the student drew a first-frame latent there: a
    4-frame flash (mean brightness 0.17 against 0.03-0.07). The trained sink keeps it: no frame stands out."""
    torch.set_num_threads(1)
    clip = _clip(model, "a red circle moves to the right on a black background", 0, frames=69)
    brightness = clip.flatten(1).mean(1)[1:]  # frame 0 is the single-image first frame
    assert float(brightness.max()) < float(brightness.median()) + 0.05, [round(v, 3) for v in brightness.tolist()]


def _moved_x(clip: torch.Tensor) -> float:
    """[T, H, W, 3] -> how far the red object's centroid moved along x, in units of the frame width: the mean of
    the last 4 frames it is seen in minus the first 4 after frame 0 (the judge's own segmentation and track). The
    default loses its object before the end in about one clip in five (benchmarks/quality/warm-ar-teacher/
    DIRECTION.md, "object lost")."""
    from training.judge import JudgeConfig
    from training.judge.measure import track_one

    track = track_one(clip, "red", JudgeConfig())
    seen = torch.nonzero(track.present[1:]).flatten() + 1
    assert len(seen) >= 12, track.present.tolist()
    return float(track.x[seen[-4:]].mean() - track.x[seen[:4]].mean())


def test_default_moves_the_way_the_prompt_says(model):
    """The default before this one moved its object the way the noise seed said, not the prompt (mean cosine to
    the asked direction +0.02, benchmarks/quality/DIRECTION.md). This one is from, and scored by, an AR teacher
    that learnt the direction: same seeds, "right" moves right and "left" moves left in every clip, and by at least
    a quarter of the world's own 0.39 S on average (the previous default failed both)."""
    torch.set_num_threads(1)
    moved = {d: [_moved_x(_clip(model, f"a red circle moves {d} on a black background", seed)) for seed in range(3)]
             for d in ("to the right", "to the left")}
    assert min(moved["to the right"]) > 0.03 and max(moved["to the left"]) < -0.03, moved
    assert sum(moved["to the right"]) / 3 > 0.1 and sum(moved["to the left"]) / 3 < -0.1, moved


def test_default_keeps_its_object_over_a_long_stream(model):
    """16 s (261 frames, 7x the clip it was trained on): a circle that moves up wraps around the frame edge and a
    square that shrinks holds its size, and both are still there at the end. The defaults distilled from teachers
    that saw only 2 s clips lost them (salt-ar-warm-tf: "moves up" seed 2 seen in 70 % of the last 66 frames,
    "shrinks" seed 1 in 24 %; benchmarks/quality/long-clips/RESULTS.md). "Moves to the left" is weaker (64-100 %)
    and not asked here."""
    from training.judge import JudgeConfig
    from training.judge.measure import track_one

    torch.set_num_threads(1)
    for prompt in ("a red circle moves up on a black background", "a red square shrinks on a black background"):
        for seed in range(3):
            track = track_one(_clip(model, prompt, seed, frames=261), "red", JudgeConfig())
            seen = float(track.present[-66:].float().mean())
            radius = float(track.radius[-66:].mean())
            assert seen >= 0.9 and radius >= 0.06, (prompt, seed, round(seen, 2), round(radius, 3))

"""User-facing generation: parameter checks with clear errors, latents convention, the CLI."""
import pytest
import torch

from salt_core.cli import main
from salt_core.pipeline import default_frames, generate_latents, random_default
from salt_core.video_io import read_mp4


@pytest.fixture(scope="module")
def model():
    return random_default()


def gen(model, **kw):
    args = dict(width=32, height=32, frames=9, seed=0)  # 9 frames -> 3 latent frames = one chunk
    args.update(kw)
    return generate_latents(model, torch.randn(1, 5, 32), **args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frames=10), r"frames must be of the form 4k\+1"),
        (dict(frames=0), r"frames must be of the form 4k\+1"),
        (dict(height=40), r"height must be a positive multiple of 16"),
        (dict(width=24), r"width must be a positive multiple of 16"),
        (dict(steps=3), r"steps=3 is outside this model's grid"),
        (dict(frames=17, chunk_frames=3), r"chunk_frames=3 does not divide the 5 latent frames; allowed chunk sizes"),
        (dict(transition="euler"), r"transition 'euler' is unknown; allowed: \['renoise', 'ode'\]"),
    ],
)
def test_bad_generation_parameters_raise_clear_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gen(model, **kwargs)


def test_bad_conditioning_raises_clear_errors(model):
    with pytest.raises(ValueError, match="empty"):
        generate_latents(model, torch.zeros(1, 0, 32), width=32, height=32, frames=9)
    with pytest.raises(ValueError, match="NaN"):
        generate_latents(model, torch.full((1, 5, 32), float("nan")), width=32, height=32, frames=9)


def test_generation_shapes_and_raw_latent_round_trip(model):
    z = generate_latents(model, torch.randn(1, 5, 32), width=32, height=48, frames=9, steps=2)
    assert z.shape == (1, 16, 3, 6, 4)
    assert torch.allclose(model.from_raw_latents(model.to_raw_latents(z)), z, atol=1e-6)


def test_default_length_fills_whole_chunks(model):
    frames = default_frames(model, seconds=4.0, fps=16)
    latent = (frames - 1) // 4 + 1
    assert frames >= 64 and latent % model.sampling.chunk_frames == 0
    assert default_frames(model, seconds=4.0, fps=16, chunk_frames=1) == 65


def test_cli_generates_an_mp4_and_says_the_model_is_random(tmp_path, capsys, monkeypatch):
    import salt_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_ASSETS", tmp_path / "no-assets")  # no embedded default bundled
    out = tmp_path / "clip.mp4"
    rc = main(["generate", "--prompt", "a red circle", "--out", str(out), "--frames", "9", "--height", "32",
               "--width", "32", "--policy", "window", "--window", "3"])
    assert rc == 0
    frames, fps = read_mp4(out)
    assert frames.shape == (9, 32, 32, 3) and fps == 16
    captured = capsys.readouterr()
    assert "RANDOMLY INITIALISED" in captured.err and "real-time factor" in captured.out


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    rc = main(["generate", "--prompt", "a red circle", "--out", str(tmp_path / "a.mp4"), "--frames", "10"])
    assert rc == 2 and "frames must be of the form 4k+1" in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists()


def test_causal_model_defaults_to_the_cache_policy_stored_by_the_trainer(tmp_path):
    import dataclasses
    import json

    from salt_core.checkpoints import save_dit
    from salt_core.kv_cache import CachePolicy
    from salt_core.pipeline import load_salt_model

    base = random_default()
    stored = {"kind": "window", "window_frames": 3, "positions": "cache_relative"}
    path = save_dit(str(tmp_path / "student.safetensors"), base.dit, base.sampling,
                    extra_metadata={"salt_trainer_cache_policy": json.dumps(stored)})
    model = load_salt_model(path)
    assert model.trained_policy == CachePolicy(**stored)
    ctx = torch.randn(1, 5, 32)
    args = dict(width=32, height=32, frames=33, steps=2, seed=3)  # 9 latent frames = 3 chunks: the window evicts
    default = generate_latents(model, ctx, **args)
    explicit = generate_latents(model, ctx, policy=CachePolicy(**stored), **args)
    full = generate_latents(model, ctx, policy=CachePolicy("full", max_frames=9), **args)
    assert torch.equal(default, explicit)
    assert not torch.allclose(default, full, atol=1e-4)

    # a malformed entry is ignored (generation falls back to `full`), not fatal
    path = save_dit(str(tmp_path / "odd.safetensors"), base.dit, base.sampling,
                    extra_metadata={"salt_trainer_cache_policy": json.dumps({"kind": "ring"})})
    odd = load_salt_model(path)
    assert odd.trained_policy is None
    assert torch.equal(generate_latents(odd, ctx, **args), full)
    # a stored `full` policy is widened to the requested length
    short_full = dataclasses.replace(model, trained_policy=CachePolicy("full", max_frames=3))
    assert torch.equal(generate_latents(short_full, ctx, **args), full)

"""User-facing generation: parameter checks with clear errors, latents convention, the CLI."""
import pytest
import torch

from salt_core.cli import main
from salt_core.kv_cache import CachePolicy
from salt_core.pipeline import default_frames, generate_latents, random_default
from salt_core.sampling.settings import CacheOverrides, SamplingOverrides
from salt_core.video_io import read_mp4


@pytest.fixture(scope="module")
def model():
    return random_default()


def gen(model, cache=None, **kw):
    args = dict(width=32, height=32, frames=9, seed=0)  # 9 frames -> 3 latent frames = one chunk
    over = {k: kw.pop(k) for k in ("steps", "timesteps", "transition", "chunk_frames") if k in kw}
    args.update(kw)
    return generate_latents(model, torch.randn(1, 5, 32), overrides=SamplingOverrides(
        cache=cache or CacheOverrides(), **over), **args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frames=10), r"frames must be of the form 4k\+1"),
        (dict(frames=0), r"frames must be of the form 4k\+1"),
        (dict(height=40), r"height must be a positive multiple of 16"),
        (dict(width=24), r"width must be a positive multiple of 16"),
        (dict(steps=3), r"steps=3 is outside this model's grid"),
        (dict(frames=17, chunk_frames=3), r"17 video frames \(5 latent frames\) do not fill whole chunks of 3.*nearest "
                                          r"video frame counts that do are 9 and 21"),
        (dict(cache=CacheOverrides(kind="window")), r"cache policy 'window' needs a window size.*trained with 'full'"),
        (dict(cache=CacheOverrides(sink_frames=2)), r"sink size \(sink_frames=2\) applies to the 'sink_window' policy"),
        (dict(height=100_000), r"exceeds the RoPE table of 1024 positions per axis"),
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
    z = generate_latents(model, torch.randn(1, 5, 32), width=32, height=48, frames=9,
                         overrides=SamplingOverrides(steps=2))
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


def _student(tmp_path, cache: CachePolicy, name="student"):
    import dataclasses

    from salt_core.checkpoints import save_dit
    from salt_core.pipeline import load_salt_model

    base = random_default()
    path = save_dit(str(tmp_path / f"{name}.safetensors"), base.dit, dataclasses.replace(base.sampling, cache=cache))
    return load_salt_model(path)


def _run(model, cache=CacheOverrides(), frames=33):
    args = dict(width=32, height=32, frames=frames, seed=3)  # 33 frames: 9 latent frames = 3 chunks: a window evicts
    return generate_latents(model, torch.ones(1, 5, 32), overrides=SamplingOverrides(steps=2, cache=cache), **args)


def test_a_causal_model_samples_with_the_cache_policy_it_was_trained_with(tmp_path):
    trained = CachePolicy("window", window_frames=3, positions="cache_relative")
    model = _student(tmp_path, trained)
    assert model.trained_policy == trained
    default = _run(model)
    assert torch.equal(default, _run(model, CacheOverrides(kind="window", window_frames=3)))
    assert not torch.allclose(default, _run(model, CacheOverrides(kind="full")), atol=1e-4)


def test_user_choices_override_single_fields_of_the_trained_policy(tmp_path):
    """`--policy window --window 3` on a cache_relative student keeps cache_relative (it used to switch to absolute)."""
    model = _student(tmp_path, CachePolicy("window", window_frames=3, positions="cache_relative"))
    plan = model.plan(SamplingOverrides(cache=CacheOverrides(kind="window", window_frames=2)), frames=33, height=32,
                      width=32)
    assert plan.policy == CachePolicy("window", window_frames=2, positions="cache_relative")
    assert plan.notes == ("cache window_frames 2 (trained: 3)",)
    plan = model.plan(SamplingOverrides(cache=CacheOverrides(kind="sink_window", sink_frames=1)), frames=33,
                      height=32, width=32)
    assert plan.policy == CachePolicy("sink_window", sink_frames=1, window_frames=3, positions="cache_relative")
    absolute = _run(model, CacheOverrides(positions="absolute"))
    assert not torch.equal(absolute, _run(model))  # positions is a real choice, applied only when asked


def test_the_old_header_field_of_the_trained_policy_still_loads(tmp_path):
    import json

    from salt_core.checkpoints import CheckpointError, save_dit
    from salt_core.pipeline import load_salt_model

    base = random_default()
    stored = {"kind": "window", "window_frames": 3, "positions": "cache_relative"}
    path = save_dit(str(tmp_path / "old.safetensors"), base.dit, base.sampling,
                    extra_metadata={"salt_trainer_cache_policy": json.dumps(stored)})
    assert load_salt_model(path).trained_policy == CachePolicy(**stored)
    bad = save_dit(str(tmp_path / "odd.safetensors"), base.dit, base.sampling,
                   extra_metadata={"salt_trainer_cache_policy": json.dumps({"kind": "ring"})})
    with pytest.raises(CheckpointError, match=r"odd.safetensors: header field 'salt_trainer_cache_policy'.*'ring'"):
        load_salt_model(bad)


def test_a_stored_full_policy_is_widened_to_the_video(tmp_path):
    short = _student(tmp_path, CachePolicy("full", max_frames=3))
    assert short.plan(SamplingOverrides(), frames=33, height=32, width=32).policy.max_frames == 9
    assert torch.equal(_run(short), _run(_student(tmp_path, CachePolicy("full", max_frames=9), "nine")))


def test_contradicting_overrides_fail_before_any_compute(tmp_path):
    model = _student(tmp_path, CachePolicy("window", window_frames=3))
    calls = []
    model.dit.register_forward_pre_hook(lambda *a: calls.append(1))
    handle = model.dit.blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="positions 'absolute'.*1024 positions"):
        _run(model, frames=4 * 1100 + 1)
    with pytest.raises(ValueError, match="only apply to causal"):
        bidir = random_default()
        bidir.sampling = SamplingDefaults_bidirectional()
        gen(bidir, cache=CacheOverrides(kind="full"))
    handle.remove()
    assert calls == []


def SamplingDefaults_bidirectional():
    from salt_core.config import SamplingDefaults

    return SamplingDefaults(causal=False)

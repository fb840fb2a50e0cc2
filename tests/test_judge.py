"""The analytic judge: real clips of the world score high; shuffled, frozen, hue-rotated, blurred and
flickering clips score measurably lower on the dimension they break and on the total; and each
adherence dimension prefers the true attribute over every other."""
import dataclasses
import math

import kornia
import pytest
import torch

from training.judge import DIMENSIONS, JudgeConfig, mean_scores, score_batch, score_clip
from training.judge.measure import track_one
from training.judge.motion import motion_score
from training.judge.shape import shape_score
from training.world import MOTIONS, SHAPES, ObjectSpec, Scene, parse_prompt, prompt_for, render, sample_scene

FRAMES, SIDE = 33, 64


def moving_scenes(count: int) -> list[Scene]:
    """Scenes in which every object moves (a still object has nothing to shuffle or freeze)."""
    scenes, seed = [], 0
    while len(scenes) < count:
        scene = sample_scene(seed, split="any")
        if all(o.motion != "still" for o in scene.objects):
            scenes.append(scene)
        seed += 1
    return scenes


def as_frames(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).clamp(0, 1)          # [T, 3, H, W] -> [T, H, W, 3]


CORRUPTIONS = {
    "shuffled": lambda v, g: v[torch.randperm(len(v), generator=g)],
    "frozen": lambda v, g: v[:1].expand_as(v).clone(),
    "hue_rotated": lambda v, g: as_frames(kornia.enhance.adjust_hue(v.permute(0, 3, 1, 2), 2 * math.pi / 3)),
    "blurred": lambda v, g: as_frames(kornia.filters.gaussian_blur2d(v.permute(0, 3, 1, 2), (7, 7), (1.5, 1.5))),
    "flickering": lambda v, g: (v * (1 + 0.15 * torch.randn(len(v), 1, 1, 1, generator=g))).clamp(0, 1),
}
# the dimension each corruption must lower (by at least the margin, on average over clips)
BROKEN = {"shuffled": ("motion", 0.5), "frozen": ("motion", 0.5), "hue_rotated": ("colour", 0.5),
          "blurred": ("sharpness", 0.3), "flickering": ("flicker", 0.5)}


@pytest.fixture(autouse=True)
def _one_thread():
    """The judge works on small tensors: one thread is faster, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scored():
    """{variant: [scores per clip]} for 8 clips (single- and two-object) and each corruption."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {"real": []} | {k: [] for k in CORRUPTIONS}
    for i, scene in enumerate(moving_scenes(8)):
        video = render(scene, FRAMES, SIDE, SIDE)
        prompt = prompt_for(scene, seed=i)
        out["real"].append(score_clip(video, prompt))
        for name, corrupt in CORRUPTIONS.items():
            out[name].append(score_clip(corrupt(video, torch.Generator().manual_seed(i)), prompt))
    torch.set_num_threads(threads)
    return out


def test_scores_are_in_unit_range_with_every_dimension(scored):
    for results in scored.values():
        for r in results:
            assert set(r) == set(DIMENSIONS) | {"total"}
            assert all(0.0 <= v <= 1.0 for v in r.values()), r


def test_real_clips_score_high(scored):
    real = mean_scores(scored["real"])
    assert all(real[d] >= 0.9 for d in DIMENSIONS), real
    assert min(r["total"] for r in scored["real"]) >= 0.9


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupted_clips_score_lower_on_the_broken_dimension_and_the_total(scored, corruption):
    dim, margin = BROKEN[corruption]
    real, bad = mean_scores(scored["real"]), mean_scores(scored[corruption])
    assert real[dim] - bad[dim] >= margin, (dim, real[dim], bad[dim])
    assert real["total"] - bad["total"] >= 0.1, (real["total"], bad["total"])
    # clip by clip, not only on average
    for r, b in zip(scored["real"], scored[corruption]):
        assert b["total"] < r["total"] - 0.03, (r, b)


def test_wrong_descriptions_lower_their_own_dimension():
    scene = Scene((ObjectSpec("square", "red", "right", "medium", (0.3, 0.5)),), "gray")
    video = render(scene, FRAMES, SIDE, SIDE)
    right = score_clip(video, scene)
    for field, wrong, dim in (("colour", "orange", "colour"), ("shape", "diamond", "shape"),
                              ("motion", "left", "motion")):
        said = Scene((dataclasses.replace(scene.objects[0], **{field: wrong}),), "gray")
        r = score_clip(video, said)
        assert right[dim] - r[dim] > 0.5 and r["total"] < right["total"], (field, r)


def _track(scene):
    return track_one(render(scene, FRAMES, SIDE, SIDE), scene.objects[0].colour, JudgeConfig())


def test_each_shape_matches_its_own_signature_best():
    config = JudgeConfig()
    for size in ("small", "large"):
        for true in SHAPES:
            track = _track(Scene((ObjectSpec(true, "blue", "up_right", size, (0.35, 0.6)),), "white"))
            scores = {named: shape_score(track, named, config) for named in SHAPES}
            assert scores[true] > 0.9, (true, scores)
            assert max(v for k, v in scores.items() if k != true) < 0.3, (true, scores)


def test_each_motion_matches_its_own_law_best():
    config = JudgeConfig()
    starts = {"bounce": (0.5, 0.75), "orbit": (0.65, 0.5)}
    for true in MOTIONS:
        track = _track(Scene((ObjectSpec("circle", "green", true, "small", starts.get(true, (0.5, 0.5))),), "black"))
        scores = {named: motion_score(track, named, 16.0, config) for named in MOTIONS}
        assert scores[true] > 0.9, (true, scores)
        assert max(v for k, v in scores.items() if k != true) < 0.3, (true, scores)


def test_prompt_string_and_scene_are_judged_alike_and_unsaid_motion_is_nan():
    scene = sample_scene(2, objects=1)
    video = render(scene, 17, SIDE, SIDE)
    prompt = prompt_for(scene, seed=0)
    assert score_clip(video, prompt) == score_clip(video, parse_prompt(prompt)) == score_clip(video, scene)
    o = scene.objects[0]
    r = score_clip(video, f"a {o.colour} {o.shape}")
    assert math.isnan(r["motion"]) and 0 <= r["total"] <= 1
    assert score_clip((video * 255).round().to(torch.uint8), prompt)["colour"] == pytest.approx(
        score_clip(video, prompt)["colour"], abs=0.02)


def test_batch_helper_and_mean():
    scenes = [sample_scene(s) for s in range(3)]
    clips = torch.stack([render(s, 9, SIDE, SIDE) for s in scenes])
    prompts = [prompt_for(s, 0) for s in scenes]
    batch = score_batch(clips, prompts)
    assert batch == [score_clip(c, p) for c, p in zip(clips, prompts)]
    mean = mean_scores(batch + [{"total": float("nan")}])
    assert mean["total"] == pytest.approx(sum(b["total"] for b in batch) / 3)


def test_bad_inputs_are_clear_value_errors():
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        score_clip(torch.rand(3, 64, 64), "a red circle moves left")
    with pytest.raises(ValueError, match="colour"):
        score_clip(torch.rand(5, 64, 64, 3), "a circle moves left and a square moves up")
    with pytest.raises(ValueError, match="2 clips but 1"):
        score_batch([torch.rand(5, 64, 64, 3)] * 2, ["a red circle"])
    with pytest.raises(ValueError, match="weights"):
        JudgeConfig(weights={"beauty": 1.0})

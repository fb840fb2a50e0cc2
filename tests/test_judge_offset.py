"""The judge's time offset: a segment cut from frame s of a longer world video is judged against the motion's
state from time s / fps on (score_clip(..., start_frame=s)), so a segment of a long rollout is not blamed for
a motion law that has moved on (grow / shrink stop after GROW_SECONDS; bounce reversals depend on the phase)."""
import pytest
import torch

from training.judge import score_batch, score_clip
from training.world import ObjectSpec, Scene, render
from training.world.attributes import GROW_SECONDS
from training.world.render import DEFAULT_FPS

FRAMES, SIDE = 33, 64
HIGH = 0.9          # a real clip judged at its own time offset earns (near) full motion marks
MARGIN = 0.2        # ... and at least this much less when judged as if it started at t = 0
AFTER_GROWTH = int(GROW_SECONDS * DEFAULT_FPS) + 8  # a start frame past the end of grow / shrink


def scene(motion: str) -> Scene:
    return Scene((ObjectSpec("circle", "red", motion, "medium", (0.5, 0.6)),), "black")


def clip(motion: str, start_frame: int) -> torch.Tensor:
    return render(scene(motion), FRAMES, SIDE, SIDE, start_frame=start_frame)


@pytest.mark.parametrize("motion,start", [("grow", AFTER_GROWTH), ("grow", 16), ("shrink", AFTER_GROWTH),
                                          ("bounce", 4), ("bounce", 12), ("orbit", 20), ("orbit", 40)])
def test_right_offset_scores_high(motion, start):
    s = score_clip(clip(motion, start), scene(motion), start_frame=start)
    assert s["motion"] >= HIGH, s
    assert s["total"] >= HIGH, s


@pytest.mark.parametrize("motion,start", [("grow", AFTER_GROWTH), ("shrink", AFTER_GROWTH), ("bounce", 4)])
def test_judged_from_zero_scores_lower(motion, start):
    """The same segment judged as if it started at t = 0 loses motion marks (and total)."""
    v = clip(motion, start)
    right = score_clip(v, scene(motion), start_frame=start)
    from_zero = score_clip(v, scene(motion))
    assert from_zero["motion"] <= right["motion"] - MARGIN, (right, from_zero)
    assert from_zero["total"] < right["total"], (right, from_zero)


def test_phase_free_motions_do_not_depend_on_the_offset():
    """Orbit turns at a constant rate: any offset judges it alike."""
    v = clip("orbit", 20)
    at_offset = score_clip(v, scene("orbit"), start_frame=20)["motion"]
    assert at_offset == pytest.approx(score_clip(v, scene("orbit"))["motion"])


def test_growth_after_the_law_stopped_is_penalised():
    """A clip that is still growing where the world holds the size scores lower at that offset."""
    growing = clip("grow", 0)
    at_start = score_clip(growing, scene("grow"))
    late = score_clip(growing, scene("grow"), start_frame=AFTER_GROWTH)
    assert late["motion"] <= at_start["motion"] - MARGIN, (at_start, late)


def test_default_is_start_frame_zero_and_batch_passes_offsets():
    v = clip("grow", AFTER_GROWTH)
    assert score_clip(v, scene("grow")) == score_clip(v, scene("grow"), start_frame=0)
    batch = score_batch([v, v], [scene("grow")] * 2, start_frame=[0, AFTER_GROWTH])
    assert batch[0] == score_clip(v, scene("grow"))
    assert batch[1] == score_clip(v, scene("grow"), start_frame=AFTER_GROWTH)
    assert score_batch([v], [scene("grow")], start_frame=AFTER_GROWTH) == [batch[1]]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_start_frame_is_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="start_frame"):
        score_clip(clip("grow", 0), scene("grow"), start_frame=bad)


def test_batch_needs_one_start_frame_per_clip():
    with pytest.raises(ValueError, match="start frames"):
        score_batch([clip("grow", 0)] * 2, [scene("grow")] * 2, start_frame=[0])


def exact_bounce_track(start_frame: int, frames: int):
    """The world's own bounce law sampled at frames start_frame.. (no rendering): a perfectly smooth track."""
    from training.judge.measure import Track
    from training.world.motion import offset_and_scale
    t = (start_frame + torch.arange(frames, dtype=torch.float64)) / DEFAULT_FPS
    _, dy, scale = offset_and_scale("bounce", t)
    ones = torch.ones(frames, dtype=torch.float64)
    return Track(mass=ones * 50, x=ones * 0.5, y=0.6 + dy, features=torch.zeros(frames, 3, dtype=torch.float64),
                 colour=torch.zeros(frames, 3, dtype=torch.float64), present=torch.ones(frames, dtype=torch.bool),
                 radius=0.1 * scale)


def test_smoothness_uses_the_time_offset():
    """Near the top of a hop the world's bounce decelerates hardest; judged at its own offset that is the
    motion's natural acceleration (full marks), judged as if it started at t = 0 it is excess acceleration."""
    from training.judge.config import JudgeConfig
    from training.judge.temporal import smoothness_score
    start = 6                                          # frames 6-10 straddle the top of the first hop (t = 0.5 s)
    track = exact_bounce_track(start, 5)
    right = smoothness_score(track, "bounce", DEFAULT_FPS, JudgeConfig(), start_frame=start)
    from_zero = smoothness_score(track, "bounce", DEFAULT_FPS, JudgeConfig())
    assert right == pytest.approx(1.0)
    assert from_zero < right - 0.1, (right, from_zero)

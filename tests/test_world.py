"""The synthetic world: deterministic scenes, antialiased rendering, motion laws, the prompt grammar and
its parser, and the held-out split. How fast rendering is: benchmarks/perf/smoke_timings.py."""
import pytest
import torch

from training.world import (COLOURS, MOTIONS, SHAPES, SIZES, ObjectSpec, Scene, WorldDataset, complete_scene,
                            held_out_combos, heldout_scenes, is_held_out, max_prompt_words, parse_prompt, prompt_for, render,
                            sample_scene, scene_split, vocabulary)
from training.world.attributes import BACKGROUNDS, COLOURS as RGB, SPEED
from training.world.palette import colours_for

SEEDS = range(300)


@pytest.fixture(autouse=True)
def _one_thread():
    """Rendering works on small tensors: one thread is faster, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def centroid_and_area(video: torch.Tensor, colour: str):
    """Independent of the judge, for objects on black: coverage from the brightest channel ->
    centroid [T, 2] (x, y) and area [T] in pixels."""
    channel = max(range(3), key=lambda i: RGB[colour][i])
    mask = video[..., channel] / RGB[colour][channel]                                      # [T, H, W]
    area = mask.sum(dim=(1, 2))
    ys, xs = torch.meshgrid(torch.arange(video.shape[1]).float(), torch.arange(video.shape[2]).float(), indexing="ij")
    cx = (mask * xs).sum(dim=(1, 2)) / area
    cy = (mask * ys).sum(dim=(1, 2)) / area
    return torch.stack([cx, cy], dim=1), area


def single(shape="circle", colour="red", motion="right", size="medium", start=(0.3, 0.5), background="black"):
    return Scene((ObjectSpec(shape, colour, motion, size, start),), background)


# ---- the world's contents ------------------------------------------------------------------------

def test_the_world_has_the_required_variety():
    assert len(SHAPES) >= 4 and len(COLOURS) >= 6 and set(SIZES) == {"small", "medium", "large"}
    assert {"left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right",
            "bounce", "grow", "shrink", "orbit"} <= set(MOTIONS)
    assert len(BACKGROUNDS) >= 3
    scenes = [sample_scene(s) for s in SEEDS]
    assert any(len(s.objects) == 2 for s in scenes) and any(len(s.objects) == 1 for s in scenes)
    for attr, values in (("shape", SHAPES), ("colour", COLOURS), ("motion", MOTIONS), ("size", SIZES)):
        seen = {getattr(o, attr) for s in scenes for o in s.objects}
        assert seen == set(values), attr
    assert {s.background for s in scenes} == set(BACKGROUNDS)


def test_scenes_are_complete_deterministic_and_objects_differ_in_colour():
    for seed in SEEDS:
        a, b = sample_scene(seed), sample_scene(seed)
        assert a == b and a.complete
        colours = [o.colour for o in a.objects]
        assert len(set(colours)) == len(colours)
        assert all(c in colours_for(a.background) for c in colours)
    assert len({sample_scene(s) for s in range(50)}) == 50


def test_bad_descriptions_are_clear_value_errors():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        ObjectSpec("hexagon", "red")
    with pytest.raises(ValueError, match="unknown colour"):
        ObjectSpec("circle", "mauve")
    with pytest.raises(ValueError, match="start"):
        ObjectSpec("circle", "red", "left", "small", (1.5, 0.2))
    with pytest.raises(ValueError, match="different colours"):
        Scene((ObjectSpec("circle", "red"), ObjectSpec("square", "red")))
    with pytest.raises(ValueError, match="split"):
        sample_scene(0, split="test")


# ---- rendering -------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames,height,width", [(1, 64, 64), (17, 64, 64), (33, 64, 96), (9, 128, 128)])
def test_render_gives_float_frames_in_unit_range(frames, height, width):
    video = render(sample_scene(3), frames, height, width)
    assert video.shape == (frames, height, width, 3) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1
    assert torch.equal(video, render(sample_scene(3), frames, height, width))


def test_render_rejects_bad_geometry_and_incomplete_scenes():
    scene = sample_scene(0)
    with pytest.raises(ValueError, match="4k\\+1"):
        render(scene, 32, 64, 64)
    with pytest.raises(ValueError, match="height"):
        render(scene, 33, 8, 64)
    with pytest.raises(ValueError, match="incomplete"):
        render(Scene((ObjectSpec("circle", "red"),)), 33, 64, 64)


def test_edges_are_antialiased():
    video = render(single(start=(0.41, 0.53)), 1, 64, 64)[0]
    red = video[..., 0] / RGB["red"][0]
    partial = ((red > 0.05) & (red < 0.95)).sum()
    assert partial >= 8  # a rim of partially covered pixels, not a hard 0/1 edge


def test_objects_start_inside_the_frame_for_the_nominal_clip():
    for seed in range(60):
        video = render(sample_scene(seed), 33, 64, 64)
        border = torch.cat([video[:, 0], video[:, -1], video[:, :, 0], video[:, :, -1]], dim=1)   # [T, 4W, 3]
        background = render(Scene((ObjectSpec("circle", "red", "still", "small", (0.5, 0.5)),),
                                  sample_scene(seed).background), 1, 64, 64)[0]
        edge = torch.cat([background[0], background[-1], background[:, 0], background[:, -1]], dim=0)
        assert (border - edge).abs().max() < 0.5, seed


# ---- motion laws -------------------------------------------------------------------------------------

@pytest.mark.parametrize("motion,dx,dy", [("right", 1, 0), ("left", -1, 0), ("up", 0, -1), ("down", 0, 1),
                                          ("up_right", 1, -1), ("down_left", -1, 1)])
def test_straight_motions_move_the_named_way_at_the_world_speed(motion, dx, dy):
    video = render(single(motion=motion, start=(0.5, 0.5)), 17, 64, 64)  # 1 second
    c, _ = centroid_and_area(video, "red")
    move = c[-1] - c[0]
    norm = (dx * dx + dy * dy) ** 0.5
    assert move[0] * dx / norm + move[1] * dy / norm == pytest.approx(SPEED * 64, rel=0.1)
    if dx == 0:
        assert abs(move[0]) < 0.5
    if dy == 0:
        assert abs(move[1]) < 0.5


def test_bounce_grow_shrink_orbit_still():
    c, area = centroid_and_area(render(single(motion="bounce", start=(0.5, 0.8)), 17, 64, 64), "red")
    assert c[8, 1] < c[0, 1] - 10 and abs(c[16, 1] - c[0, 1]) < 0.5           # up, then back on the floor
    _, area = centroid_and_area(render(single(motion="grow", start=(0.5, 0.5)), 33, 64, 64), "red")
    assert (torch.diff(area) > 0).all() and area[-1] > 4 * area[0]
    _, area = centroid_and_area(render(single(motion="shrink", start=(0.5, 0.5)), 33, 64, 64), "red")
    assert (torch.diff(area) < 0).all()
    c, _ = centroid_and_area(render(single(motion="orbit", start=(0.7, 0.5)), 33, 64, 64), "red")
    assert c[8, 1] < c[0, 1] - 5 and c[16, 0] < c[0, 0] - 15                 # up first: counter-clockwise
    assert (c[-1] - c[0]).norm() < 0.5                                        # a full turn in 2 s
    c, area = centroid_and_area(render(single(motion="still"), 33, 64, 64), "red")
    assert (c - c[0]).abs().max() < 1e-4 and (area - area[0]).abs().max() < 1e-4


def test_straight_motion_wraps_around_and_keeps_its_size():
    video = render(single(motion="right", start=(0.8, 0.5)), 65, 64, 64)    # crosses the right edge
    coverage = (video[..., 0] / RGB["red"][0]).sum(dim=(1, 2))
    assert (coverage - coverage[0]).abs().max() < 0.02 * coverage[0]


def test_render_can_start_later_in_time():
    scene = sample_scene(11)
    whole = render(scene, 33, 64, 64)
    assert torch.allclose(render(scene, 17, 64, 64, start_frame=16), whole[16:], atol=1e-5)


# ---- held-out split --------------------------------------------------------------------------------

def test_held_out_split_is_a_fixed_minority_of_combinations():
    combos = held_out_combos()
    total = len(COLOURS) * len(SHAPES) * len(MOTIONS)
    assert 0.05 * total < len(combos) < 0.25 * total
    assert combos == held_out_combos() and all(is_held_out(*c) for c in combos)
    train_scenes = [sample_scene(s) for s in SEEDS]
    assert all(scene_split(s) == "train" for s in train_scenes)
    held = heldout_scenes(20)
    assert all(is_held_out(*s.objects[0].combo) for s in held) and held == heldout_scenes(20)
    # every single attribute value is still seen in training
    seen = {v for s in train_scenes for o in s.objects for v in o.combo}
    assert set(COLOURS) | set(SHAPES) | set(MOTIONS) <= seen


# ---- grammar and parser ----------------------------------------------------------------------------

def test_prompts_use_only_the_vocabulary_and_parse_back_to_their_scene():
    vocab = set(vocabulary())
    for seed in SEEDS:
        scene = sample_scene(seed, split="any")
        prompt = prompt_for(scene, seed)
        assert set(prompt.replace(",", "").split()) <= vocab, prompt
        parsed = parse_prompt(prompt)
        assert parsed.unknown_words == ()
        assert len(parsed.scene.objects) == len(scene.objects)
        for said, true in zip(parsed.scene.objects, scene.objects):
            assert (said.shape, said.colour, said.motion) == (true.shape, true.colour, true.motion), prompt
            assert said.size in (None, true.size) and said.start is None
        assert parsed.scene.background in (None, scene.background)


def test_prompts_fit_the_stated_longest_length():
    longest = max(len(prompt_for(sample_scene(s), s).split()) for s in SEEDS)
    assert longest <= max_prompt_words() <= 32


def test_the_grammar_paraphrases():
    scene = sample_scene(4)
    assert len({prompt_for(scene, s) for s in range(30)}) >= 10


@pytest.mark.parametrize("prompt,objects,background", [
    ("a red circle moves to the right", [("circle", "red", "right")], None),
    ("A red ball slides right.", [("circle", "red", "right")], None),
    ("red circle going right on a black background", [("circle", "red", "right")], "black"),
    ("a red circle moves left and a blue square moves up", [("circle", "red", "left"), ("square", "blue", "up")], None),
    ("on a dark blue background, the big pink box moves up and to the left", [("square", "pink", "up_left")], "navy"),
    ("a green triangle bounces up and down while a yellow dot goes round and round",
     [("triangle", "green", "bounce"), ("circle", "yellow", "orbit")], None),
    ("a cyan diamond", [("diamond", "cyan", None)], None),
])
def test_parse_prompt_examples(prompt, objects, background):
    parsed = parse_prompt(prompt)
    assert [(o.shape, o.colour, o.motion) for o in parsed.scene.objects] == objects
    assert parsed.scene.background == background and parsed.unknown_words == ()


def test_parse_prompt_reports_unknown_words_and_needs_a_shape():
    parsed = parse_prompt("a red circle moonwalks quickly to the left")
    assert parsed.unknown_words == ("moonwalks", "quickly")
    assert parsed.scene.objects[0].motion == "left"
    with pytest.raises(ValueError, match="no shape word"):
        parse_prompt("something red moves left")


def test_complete_scene_fills_what_the_prompt_left_out():
    said = parse_prompt("a red circle moves to the right").scene
    full = complete_scene(said, seed=1)
    assert full.complete and full == complete_scene(said, seed=1)
    assert (full.objects[0].shape, full.objects[0].colour, full.objects[0].motion) == ("circle", "red", "right")
    assert render(full, 5, 64, 64).shape == (5, 64, 64, 3)


def test_dataset_serves_clips_and_prompts():
    ds = WorldDataset(frames=9, height=64, width=64, length=10)
    video, prompt = ds[3]
    assert video.shape == (9, 64, 64, 3) and prompt == ds.prompt(3)
    assert parse_prompt(prompt).scene.objects[0].shape == ds.scene(3).objects[0].shape
    with pytest.raises(IndexError):
        ds[10]

"""The synthetic text-to-video world: scenes from seeds, closed-form rendering, a prompt grammar
with paraphrases, its parser, and a held-out split for evaluation.

    scene = sample_scene(0)                          # complete, deterministic by seed
    video = render(scene, frames=33, height=64, width=64)   # [T, H, W, 3] float32 in 0..1, 16 fps
    prompt = prompt_for(scene, seed=0)               # "a red ball slides right on a black background"
    parsed = parse_prompt(prompt)                    # .scene (what was said), .unknown_words
"""
from .attributes import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES
from .dataset import WorldDataset
from .grammar import max_prompt_words, prompt_for, vocabulary
from .motion import expected_area_ratio, offset_and_scale
from .parse import ParsedPrompt, motion_from_words, parse_prompt
from .render import DEFAULT_FPS, background_image, render
from .sampling import complete_scene, heldout_scenes, sample_scene
from .scene import ObjectSpec, Scene
from .split import held_out_combos, is_held_out, scene_split

__all__ = [
    "BACKGROUNDS", "COLOURS", "MOTIONS", "SHAPES", "SIZES", "DEFAULT_FPS",
    "ObjectSpec", "Scene", "ParsedPrompt", "WorldDataset",
    "sample_scene", "complete_scene", "heldout_scenes", "render", "background_image",
    "prompt_for", "vocabulary", "max_prompt_words", "parse_prompt", "motion_from_words",
    "offset_and_scale", "expected_area_ratio", "is_held_out", "held_out_combos", "scene_split",
]

"""A map-style dataset of world clips, generated on the fly (rendering takes milliseconds).

    ds = WorldDataset(frames=33, height=64, width=64)
    video, prompt = ds[i]          # video: [T, H, W, 3] float32 in 0..1; prompt: str
    scene = ds.scene(i)            # the complete description of clip i
"""
from __future__ import annotations

import torch

from .grammar import prompt_for
from .render import DEFAULT_FPS, check_geometry, render
from .sampling import sample_scene
from .scene import Scene
from .split import check_split


class WorldDataset(torch.utils.data.Dataset):
    def __init__(self, frames: int = 33, height: int = 64, width: int = 64, fps: float = DEFAULT_FPS,
                 split: str = "train", length: int = 100_000, seed: int = 0):
        check_geometry(frames, height, width, fps)
        check_split(split)
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        self.frames, self.height, self.width, self.fps = frames, height, width, fps
        self.split, self.length, self.seed = split, length, seed

    def __len__(self) -> int:
        return self.length

    def _seed(self, index: int) -> int:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range 0..{self.length - 1}")
        return self.seed * 1_000_003 + index

    def scene(self, index: int) -> Scene:
        return sample_scene(self._seed(index), split=self.split)

    def prompt(self, index: int) -> str:
        return prompt_for(self.scene(index), seed=self._seed(index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        scene = self.scene(index)
        video = render(scene, self.frames, self.height, self.width, self.fps)
        return video, prompt_for(scene, seed=self._seed(index))

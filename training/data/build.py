"""video clips -> normalised VAE latents + text embeddings, as a latent dataset (build-latents).

A clip source is any iterable of (frames [T, H, W, 3] uint8 or float 0..1, prompt). Sources here: a folder
of .mp4 with same-named .txt prompts, a .jsonl manifest {"video", "prompt"}, or a 'module:function'
callable (the synthetic world plugs in this way; it renders clips of build.frames when given). Clips are cut
to the longest 4k+1 prefix (or build.frames); height and width must be multiples of the VAE's spatial factor.
"""
from __future__ import annotations

import inspect
import json
import os
from typing import Iterable, Iterator, Optional

import torch

from salt_core.video_io import frames_to_model_space, read_mp4

from .shards import INDEX, ShardWriter, write_index
from .text import load_callable, write_embeddings

Clip = tuple[torch.Tensor, str]


def video_folder_clips(path: str) -> Iterator[Clip]:
    """A folder of *.mp4 (prompt in the same-named .txt) or a .jsonl manifest of {video, prompt}."""
    if path.endswith(".jsonl"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"build.path {path!r}: manifest not found")
        base = os.path.dirname(os.path.abspath(path))
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict) or "video" not in row or "prompt" not in row:
                raise ValueError(f"{path}:{n}: each line must be an object with 'video' and 'prompt'")
            yield read_mp4(os.path.join(base, row["video"]))[0], str(row["prompt"])
        return
    if not os.path.isdir(path):
        raise FileNotFoundError(f"build.path {path!r}: no such folder or .jsonl manifest")
    videos = sorted(n for n in os.listdir(path) if n.lower().endswith(".mp4"))
    if not videos:
        raise ValueError(f"build.path {path!r}: no .mp4 files in the folder")
    for name in videos:
        txt = os.path.join(path, os.path.splitext(name)[0] + ".txt")
        if not os.path.isfile(txt):
            raise FileNotFoundError(f"{txt}: missing prompt file for {name}")
        with open(txt, encoding="utf-8") as f:
            prompt = f.read().strip()
        yield read_mp4(os.path.join(path, name))[0], prompt


def callable_clips(spec: str, frames: int = 0) -> Iterable[Clip]:
    """The clips of a 'module:function' source. With frames > 0 and a function that takes a `frames` argument
    (training.world.dataset:WorldDataset does), it is asked for clips that long; a function without one is
    called bare and its clips are cut to `frames` (build_latents refuses shorter ones)."""
    source = load_callable(spec, "build.path")
    if frames and _takes_frames(source):
        return source(frames=frames)
    return source()


def _takes_frames(source) -> bool:
    try:
        params = inspect.signature(source).parameters
    except (TypeError, ValueError):  # builtins and some extension types have no signature
        return False
    return "frames" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def cut_frames(frames: torch.Tensor, want: int, temporal: int) -> torch.Tensor:
    T = frames.shape[0]
    n = want or (1 + temporal * ((T - 1) // temporal))
    if (n - 1) % temporal:
        raise ValueError(f"build.frames={want} must be of the form {temporal}k+1")
    if T < n:
        raise ValueError(f"a clip has {T} frames, fewer than build.frames={n}")
    return frames[:n]


@torch.no_grad()
def build_latents(clips: Iterable[Clip], vae, encoder, output: str, *, frames: int = 0, limit: int = 0,
                  samples_per_shard: int = 64, negative_prompt: str = "", device="cpu",
                  meta: Optional[dict] = None) -> int:
    """Encode clips into a latent dataset at `output`; also writes text_embeddings.safetensors holding
    every prompt and the negative prompt (a `file` text source). Returns the number of samples."""
    if os.path.exists(os.path.join(output, INDEX)):
        raise ValueError(f"build.output {output!r} already holds a dataset; remove it or choose another folder")
    writer = ShardWriter(output, samples_per_shard=samples_per_shard)
    prompts: list[str] = []
    for clip, prompt in clips:
        if limit and writer.count >= limit:
            break
        clip = cut_frames(torch.as_tensor(clip), frames, vae.config.temporal_factor)
        video = frames_to_model_space(clip).to(device=device, dtype=vae.dtype)
        z = vae.normalize(vae.encode(video))[0].float().cpu()  # [C, T, H, W]
        writer.add({"latents": z, "context": encoder.encode([prompt])[0].float()}, prompt)
        prompts.append(prompt)
    writer.flush()
    if not prompts:
        raise ValueError("the clip source yielded no clips")
    write_index(output, "latents", meta)
    everything = prompts + [negative_prompt]
    write_embeddings(os.path.join(output, "text_embeddings.safetensors"), everything, encoder.encode(everything))
    return len(prompts)

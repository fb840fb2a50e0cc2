"""A contact sheet of checkpoints' clips for judging by eye: one row per prompt, and for each checkpoint a block
of frames from that clip (suite conventions: prompt i is seed i, shift-5 uniform grid, CFG only if given).

    python benchmarks/quality/contact_sheet.py benchmarks/quality/checkpoints/salt-ar-warm-tf.safetensors \\
        runs/world/salt_ar_warm_tf/model.safetensors --nfe 4 --prompts 8 --out sheet.png

Rows are labelled with the prompt; blocks in the order the checkpoints are given. Writes one PNG (atomically).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from generation import DEFAULT_PROMPTS, DEFAULT_TEXT_ENCODER, DEFAULT_VAE, Bench, read_prompts, to_uint8  # noqa: E402
from salt_core.checkpoints import load_dit  # noqa: E402

LABEL_HEIGHT = 14
GAP = 6


def pick_frames(count: int, wanted: int) -> list[int]:
    """`wanted` frame indices spread evenly from the first to the last of `count` frames."""
    if wanted < 1:
        raise ValueError(f"--frames must be at least 1, got {wanted}")
    if wanted == 1:
        return [0]
    return sorted({round(k * (count - 1) / (wanted - 1)) for k in range(wanted)})


def sheet(rows: list[list[torch.Tensor]], labels: list[str], frames: list[int], scale: int) -> Image.Image:
    """rows[r][c]: uint8 video [T, H, W, 3] of prompt r from checkpoint c -> one image."""
    _, height, width, _ = rows[0][0].shape
    tile_w, tile_h = width * scale, height * scale
    block_w = len(frames) * tile_w + GAP
    image = Image.new("RGB", (len(rows[0]) * block_w, len(rows) * (tile_h + LABEL_HEIGHT)), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for r, (videos, label) in enumerate(zip(rows, labels)):
        top = r * (tile_h + LABEL_HEIGHT)
        draw.text((2, top + 1), label, fill=(255, 255, 255))
        for c, video in enumerate(videos):
            for k, f in enumerate(frames):
                tile = Image.fromarray(video[f].numpy()).resize((tile_w, tile_h), Image.NEAREST)
                image.paste(tile, (c * block_w + k * tile_w, top + LABEL_HEIGHT))
    return image


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="DiT .safetensors files, one block of frames each")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--nfe", type=int, default=4)
    p.add_argument("--guidance", type=float, default=1.0, help="CFG scale (1 = none; otherwise empty negative)")
    p.add_argument("--prompts", type=int, default=8, help="the first N prompts of --prompt-file")
    p.add_argument("--prompt-file", default=DEFAULT_PROMPTS)
    p.add_argument("--frames", type=int, default=5, help="frames shown per clip, first to last")
    p.add_argument("--scale", type=int, default=2, help="pixels per pixel (nearest)")
    p.add_argument("--vae", default=DEFAULT_VAE)
    p.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if not a.out.lower().endswith(".png"):
        raise SystemExit(f"--out {a.out!r}: expected a .png path")
    if a.scale < 1:
        raise SystemExit(f"--scale must be at least 1, got {a.scale}")
    missing = [c for c in a.checkpoints if not os.path.isfile(c)]
    if missing:
        raise SystemExit(f"no such checkpoint: {missing[0]}")
    torch.set_num_threads(a.threads)
    prompts = read_prompts(a.prompt_file, a.prompts)
    bench = Bench(HERE, a.vae, a.text_encoder, prompts)
    rows: list[list[torch.Tensor]] = [[] for _ in prompts]
    for path in a.checkpoints:
        model, info = load_dit(path)
        model.eval()
        for i in range(len(prompts)):
            _, video, _ = bench.judged(model, info, a.nfe, i, guidance=a.guidance)
            rows[i].append(to_uint8(video))
    frames = pick_frames(rows[0][0].shape[0], a.frames)
    image = sheet(rows, [f"{i}: {p}" for i, p in enumerate(prompts)], frames, a.scale)
    tmp = a.out + ".tmp.png"
    image.save(tmp)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: {len(prompts)} prompts x {len(a.checkpoints)} checkpoints, frames {frames}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

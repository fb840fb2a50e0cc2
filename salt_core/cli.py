"""`python -m salt_core generate ...`: text to video on a bare machine (embedded default when no checkpoint)."""
from __future__ import annotations

import argparse
import logging
import sys
import time

import torch

from .kv_cache import POLICIES, POSITIONS, CachePolicy


def _policy(args) -> CachePolicy | None:
    if args.policy is None:
        return None
    return CachePolicy(
        args.policy,
        window_frames=args.window if args.policy != "full" else 0,
        sink_frames=args.sink if args.policy == "sink_window" else 0,
        positions=args.positions,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m salt_core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate an MP4 from a text prompt")
    g.add_argument("--prompt", required=True, help="text prompt")
    g.add_argument("--out", required=True, help="output .mp4 path")
    g.add_argument("--checkpoint", default=None, help="DiT checkpoint (default: the embedded default model)")
    g.add_argument("--vae", default=None, help="VAE checkpoint (default: the one bundled with the model)")
    g.add_argument("--frames", type=int, default=None, help="pixel frames, 4k+1 (default: from --seconds)")
    g.add_argument("--seconds", type=float, default=4.0, help="video length when --frames is not given")
    g.add_argument("--height", type=int, default=64)
    g.add_argument("--width", type=int, default=64)
    g.add_argument("--fps", type=float, default=16.0)
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's trained grid)")
    g.add_argument("--timesteps", type=float, nargs="+", default=None, help="explicit timesteps (0..1000, un-shifted)")
    g.add_argument("--transition", choices=["renoise", "ode"], default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--chunk-frames", type=int, default=None, help="latent frames per chunk (causal models)")
    g.add_argument("--policy", choices=POLICIES, default=None, help="KV-cache memory policy (causal models); default: the one the model was trained under, else full")
    g.add_argument("--window", type=int, default=6, help="window/sink_window: past latent frames kept")
    g.add_argument("--sink", type=int, default=1, help="sink_window: first latent frames kept")
    g.add_argument("--positions", choices=POSITIONS, default="absolute")
    g.add_argument("--device", default="cpu")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    return p


def generate(args) -> int:
    from .pipeline import decode_stream, default_frames, encode_prompt, load_salt_model, stream_latents
    from .video_io import write_mp4

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_salt_model(args.checkpoint, device=args.device)
    for note in model.notes:
        print(f"note: {note}", file=sys.stderr)
    vae = model.vae
    if args.vae is not None:
        from .checkpoints import load_vae

        vae = load_vae(args.vae, device=args.device)[0].eval()
    if vae is None:
        raise ValueError(f"model {model.name!r} has no bundled VAE: pass --vae PATH (a Wan 2.1 VAE file)")
    context, unknown = encode_prompt(model, args.prompt)
    if unknown:
        print(f"warning: words unknown to the text encoder (encoded as <unk>): {', '.join(unknown)}", file=sys.stderr)
    load_s = time.perf_counter() - t0
    frames = args.frames or default_frames(model, args.seconds, args.fps, args.chunk_frames)

    t1 = time.perf_counter()
    with torch.inference_mode():
        chunks = (c.latents for c in stream_latents(
            model, context, width=args.width, height=args.height, frames=frames, steps=args.steps,
            timesteps=args.timesteps, transition=args.transition, seed=args.seed,
            chunk_frames=args.chunk_frames, policy=_policy(args),
        ))
        path, n = write_mp4(args.out, decode_stream(model, vae, chunks), fps=args.fps)
    gen_s = time.perf_counter() - t1
    video_s = n / args.fps
    print(
        f"wrote {path}: {n} frames {args.width}x{args.height} @ {args.fps:g} fps ({video_s:.2f} s of video) "
        f"with model {model.name!r}; load {load_s:.2f} s, generate+decode+encode {gen_s:.2f} s "
        f"(real-time factor {gen_s / video_s:.2f}: {'faster' if gen_s < video_s else 'slower'} than real time)"
    )
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return generate(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1

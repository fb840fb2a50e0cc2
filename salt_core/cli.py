"""`python -m salt_core generate ...`: text to video on a bare machine (the embedded default when no checkpoint).

Every setting left unset keeps what the model was trained with (printed at the start); what you set is applied on
top of it. A checkpoint's family (Salt, Self Forcing, Causal Forcing, LongLive, CausVid, Wan 2.1, our exports) is
detected from the file and can be chosen with --family. Commands: `generate`, `info` (what a model was trained with
and which family it is), `vocabulary` (the words the embedded default's text encoder knows).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import warnings

from .families.table import family_names
from .kv_cache import POLICIES, POSITIONS

MAX_FRAMES = 1_000_000  # ~17 h at 16 fps: a longer request is taken for a typo
MAX_SIDE = 8192  # pixels per side
EMBEDDED_SIZE = (64, 64)  # the embedded default's (height, width)


def _positive(kind, name: str, low=1, high=None):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} must be finite, got {text!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{name} must be {bound}, got {text!r}")
        return value
    return parse


def _lora(text: str) -> tuple[str, float]:
    """FILE or FILE:STRENGTH (a path may itself hold ':', e.g. C:\\loras\\x.safetensors)."""
    path, sep, tail = text.rpartition(":")
    if sep:
        try:
            strength = float(tail)
        except ValueError:
            return text, 1.0
        if not math.isfinite(strength):
            raise argparse.ArgumentTypeError(f"--lora strength must be finite, got {tail!r}")
        return path, strength
    return text, 1.0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="DiT checkpoint (default: the embedded default model)")
    p.add_argument("--family", choices=["auto", *family_names()], default="auto",
                   help="model family: auto = detected from the file (header, name, container, shapes); a name sets "
                        "its sampling defaults and weights, checked against the file")
    p.add_argument("--weights", choices=["auto", "ema", "regular"], default="auto",
                   help="trainer checkpoints: EMA or regular generator weights (auto: the family's)")
    p.add_argument("--lora", type=_lora, action="append", default=[], metavar="FILE[:STRENGTH]",
                   help="a LoRA applied to the DiT (repeatable, in order; strength default 1)")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it has none (required, or None) or its help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required or action.default in (None, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    fmt = _DefaultsFormatter
    p = argparse.ArgumentParser(prog="python -m salt_core", description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate an MP4 from a text prompt", formatter_class=fmt,
                       description="Text to video. Unset sampling options keep the model's trained values "
                                   "(see `python -m salt_core info`).")
    g.add_argument("--prompt", required=True, help="text prompt (the embedded default knows the words listed by "
                                                   "`python -m salt_core vocabulary`)")
    g.add_argument("--out", required=True, help="output .mp4 path")
    _add_model_options(g)
    g.add_argument("--vae", default=None, help="VAE checkpoint (default: the one the model records or bundles)")
    g.add_argument("--text-encoder", default=None,
                   help="text encoder: umT5-XXL (Wan's .pth, ComfyUI's umt5_xxl_*.safetensors, transformers) for real "
                        "Wan models, or a tiny world encoder (default: the one the model records)")
    g.add_argument("--tokenizer", default=None,
                   help="umT5 tokenizer (tokenizer.json, spiece.model or the google/umt5-xxl folder); ComfyUI's "
                        "umT5 files carry their own")
    g.add_argument("--guidance", type=_positive(float, "--guidance", 0.0, 100.0), default=None,
                   help="classifier-free guidance scale (default: the family's: 1 = none for distilled students, "
                        "Wan 2.1 teachers 5 / 6)")
    g.add_argument("--negative-prompt", default=None,
                   help="negative prompt of the guidance (default: Wan's for umT5)")
    g.add_argument("--frames", type=_positive(int, "--frames", 1, MAX_FRAMES), default=None,
                   help="video frames, 4k+1 (default: from --seconds)")
    g.add_argument("--seconds", type=_positive(float, "--seconds", 1e-3, MAX_FRAMES / 8.0), default=4.0,
                   help="video length when --frames is not given (rounded up to whole chunks)")
    g.add_argument("--height", type=_positive(int, "--height", 16, MAX_SIDE), default=None,
                   help="height in pixels, a multiple of 16 (default: the model's trained height; 64 for the "
                        "embedded default)")
    g.add_argument("--width", type=_positive(int, "--width", 16, MAX_SIDE), default=None,
                   help="width in pixels, a multiple of 16 (default: the model's trained width; 64 for the "
                        "embedded default)")
    g.add_argument("--fps", type=_positive(float, "--fps", 0.1, 240.0), default=16.0, help="frames per second")
    g.add_argument("--steps", type=_positive(int, "--steps", 0, 1000), default=0,
                   help="denoising steps; 0 = the model's trained grid")
    g.add_argument("--timesteps", type=float, nargs="+", default=None,
                   help="explicit timesteps on the 0..1000 scale before the shift (overrides --steps)")
    g.add_argument("--transition", choices=["renoise", "ode"], default=None, help="default: the model's")
    g.add_argument("--seed", type=_positive(int, "--seed", 0, 2**64 - 1), default=0,
                   help="random seed: the same seed and settings give the same video on any device")
    g.add_argument("--chunk-frames", type=_positive(int, "--chunk-frames", 0, 4096), default=0,
                   help="latent frames per chunk (causal models); 0 = the model's")
    c = g.add_argument_group("KV cache of causal models (each unset value keeps the trained policy's)")
    c.add_argument("--policy", choices=POLICIES, default=None, help="memory policy")
    c.add_argument("--window", type=_positive(int, "--window", 1, 1_000_000), default=None,
                   help="window / sink_window: past latent frames kept")
    c.add_argument("--sink", type=_positive(int, "--sink", 1, 1_000_000), default=None,
                   help="sink_window: first latent frames kept for the whole video")
    c.add_argument("--max-frames", type=_positive(int, "--max-frames", 1, MAX_FRAMES), default=None,
                   help="full: the most latent frames the cache may hold")
    c.add_argument("--positions", choices=POSITIONS, default=None,
                   help="absolute: RoPE index = true frame index (limited to the RoPE table); cache_relative: "
                        "cached frames re-indexed (no length limit)")
    c.add_argument("--context-t", type=_positive(float, "--context-t", 0.0, 1000.0), default=None,
                   help="timestep of the context pass that commits a finished chunk")
    d = g.add_argument_group("VAE decode tiled in space (bounds the decode's memory at large sizes)")
    d.add_argument("--vae-tile", type=_positive(int, "--vae-tile", 1, 4096), default=None,
                   help="tile side in latent cells (8 px each; at least the decoder's receptive field: 25 for the Wan "
                        "2.1 VAE); default: the largest tile that fits --vae-memory, else untiled")
    d.add_argument("--vae-tile-overlap", type=_positive(int, "--vae-tile-overlap", 0, 4096), default=8,
                   help="latent cells shared by neighbouring tiles")
    d.add_argument("--vae-memory", type=_positive(float, "--vae-memory", 1.0, 2.0**30), default=None, metavar="MIB",
                   help="memory budget of the decode in MiB (caches, transients and a chunk's frames); checked "
                        "before sampling starts")
    g.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N, mps")
    g.add_argument("--threads", type=_positive(int, "--threads", 1, 4096), default=None,
                   help="CPU threads for torch (default: torch's choice)")
    i = sub.add_parser("info", help="print what a model was trained with and which family it is (reads no weight)",
                       formatter_class=fmt)
    _add_model_options(i)
    v = sub.add_parser("vocabulary", help="print the words the model's text encoder knows", formatter_class=fmt)
    v.add_argument("--checkpoint", default=None, help="DiT checkpoint (default: the embedded default model)")
    return p


def overrides_from(args):
    from .sampling.settings import CacheOverrides, SamplingOverrides

    cache = CacheOverrides(kind=args.policy, window_frames=args.window, sink_frames=args.sink,
                           max_frames=args.max_frames, positions=args.positions, context_t=args.context_t)
    return SamplingOverrides(steps=args.steps or None, timesteps=args.timesteps, transition=args.transition,
                             chunk_frames=args.chunk_frames or None, cache=cache)


def tiling_from(args):
    from .vae import DecodeTiling

    budget = None if args.vae_memory is None else int(args.vae_memory * 2**20)
    return DecodeTiling(tile=args.vae_tile, overlap=args.vae_tile_overlap, memory_budget=budget)


def frames_for(args, model) -> int:
    """--frames as given, else the shortest whole-chunk video lasting --seconds."""
    from .pipeline import frames_for_seconds

    if args.frames is not None:
        return args.frames
    chunk = (args.chunk_frames or model.sampling.chunk_frames) if model.sampling.causal else 1
    return frames_for_seconds(args.seconds, args.fps, chunk, limit=MAX_FRAMES)


def _load(args, device=None):
    from .pipeline import load_salt_model

    if args.checkpoint is None:
        given = [f"--{n.replace('_', '-')}" for n in ("family", "weights", "text_encoder", "tokenizer")
                 if getattr(args, n, "auto") not in ("auto", None)] + (["--lora"] if getattr(args, "lora", []) else [])
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{', '.join(given)} {verb} to a --checkpoint; without one the embedded default is used")
        return load_salt_model(None, device=device or "cpu")
    return load_salt_model(args.checkpoint, device=device or "cpu", family=getattr(args, "family", "auto"),
                           weights=getattr(args, "weights", "auto"), lora=getattr(args, "lora", []),
                           text_encoder=getattr(args, "text_encoder", None), tokenizer=getattr(args, "tokenizer", None),
                           vae=getattr(args, "vae", None))


def generate(args) -> int:
    import torch

    from .atomic import sigterm_as_interrupt
    from .devices import resolve_device
    from .pipeline import decode_stream, encode_prompt, frame_decoder_for, guidance_for, stream_latents
    from .sampling.settings import describe_trained
    from .validation import latent_frames_for, latent_size_for
    from .vae import check_formats
    from .video_io import check_writable, write_mp4

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    check_writable(args.out)  # before any model loads: a folder, a read-only place, no space, no ffmpeg
    t0 = time.perf_counter()
    model = _load(args, device)
    for note in model.notes:
        print(f"note: {note}", file=sys.stderr)
    vae = model.vae
    if vae is None:
        raise ValueError(f"model {model.name!r} has no VAE it records or bundles: pass --vae PATH (a Wan 2.1 VAE "
                         "file)")
    check_formats(model.latent_format, vae, f"model {model.name!r}")  # before any compute
    trained_hw = model.sampling.resolution or (EMBEDDED_SIZE if model.source.endswith("default") else None)
    height = args.height or (trained_hw or EMBEDDED_SIZE)[0]
    width = args.width or (trained_hw or EMBEDDED_SIZE)[1]
    frames = frames_for(args, model)
    plan = model.plan(overrides_from(args), frames=frames, height=height, width=width)
    print(f"model {model.name!r}: trained with {describe_trained(model.sampling)}", file=sys.stderr)
    if trained_hw and (height, width) != tuple(trained_hw):
        plan_notes = (f"size {width}x{height}: the model was trained at {trained_hw[1]}x{trained_hw[0]}; "
                      "other sizes may not draw what it learnt",)
    else:
        plan_notes = ()
    for note in plan.notes + plan_notes:
        print(f"note: {note}", file=sys.stderr)
    chunk = plan.layout.chunk_frames if plan.causal else latent_frames_for(frames)
    try:  # a tile below the receptive field or a budget too small fails here, before sampling
        decoder = frame_decoder_for(model, vae, tiling_from(args))
        tiles = decoder.plan_ahead(1, chunk, latent_size_for(height, width))
    except ValueError as e:
        raise ValueError(f"--vae-tile / --vae-tile-overlap / --vae-memory: {e}") from None
    if tiles:
        print(f"note: {tiles}", file=sys.stderr)
    context, unknown = encode_prompt(model, args.prompt)
    if unknown:
        print(f"warning: words unknown to the text encoder (encoded as <unk>): {', '.join(unknown)}", file=sys.stderr)
    guidance = guidance_for(model, args.guidance, args.negative_prompt)
    if guidance.active:
        print(f"classifier-free guidance {guidance.scale:g} (two forwards per step)", file=sys.stderr)
    load_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    with torch.inference_mode(), sigterm_as_interrupt():  # a kill leaves no half-written file, as Ctrl+C
        chunks = (c.latents for c in stream_latents(model, context, width=width, height=height, frames=frames,
                                                    overrides=overrides_from(args), seed=args.seed,
                                                    guidance=guidance))
        path, n = write_mp4(args.out, decode_stream(model, vae, chunks, decoder=decoder), fps=args.fps)
    gen_s = time.perf_counter() - t1
    video_s = n / args.fps
    print(
        f"wrote {path}: {n} frames {width}x{height} @ {args.fps:g} fps ({video_s:.2f} s of video) "
        f"with model {model.name!r}; load {load_s:.2f} s, generate+decode+encode {gen_s:.2f} s "
        f"(real-time factor {gen_s / video_s:.2f}: {'faster' if gen_s < video_s else 'slower'} than real time)"
    )
    return 0


def info(args) -> int:
    from .sampling.settings import describe_trained

    if args.checkpoint is None:
        model = _load(args)
        name, sampling, notes, guidance = model.name, model.sampling, model.notes, model.guidance_scale
    else:
        from pathlib import Path

        from .checkpoints import inspect_dit
        from .pipeline import trained_companions

        found = inspect_dit(args.checkpoint, which=args.weights, family=args.family, lora=args.lora)
        notes = list(found.notes)
        trained_companions(args.checkpoint, found.metadata, (), notes)
        name, sampling, guidance = Path(args.checkpoint).name, found.sampling, found.guidance_scale
        print(f"family: {found.family}")
    print(f"{name}: {describe_trained(sampling)}")
    if sampling.resolution:
        print(f"trained at {sampling.resolution[1]}x{sampling.resolution[0]} pixels")
    if guidance != 1.0:
        print(f"samples with classifier-free guidance {guidance:g}")
    for note in notes:
        print(f"note: {note}")
    return 0


def vocabulary(args) -> int:
    model = _load(args)
    if model.text_encoder is None or not hasattr(model.text_encoder, "vocab"):
        raise ValueError(f"model {model.name!r} has no word-level text encoder to list (real Wan models read umT5, "
                         "whose tokenizer takes any text)")
    words = sorted(model.text_encoder.vocab)
    print(f"{len(words)} words known to {model.name!r}'s text encoder (other words become <unk> and are reported):")
    print(" ".join(words))
    return 0


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    from .checkpoints import CheckpointError
    from .text.model import UnknownWordsWarning
    from .text.umt5 import MissingTokenizerLibrary

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.showwarning = _one_line_warnings
    warnings.filterwarnings("ignore", category=UnknownWordsWarning)  # `generate` reports the words itself
    args = build_parser().parse_args(argv)
    try:
        return {"generate": generate, "info": info, "vocabulary": vocabulary}[args.command](args)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except (ValueError, CheckpointError, FileNotFoundError, PermissionError, IsADirectoryError,
            MissingTokenizerLibrary) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2

"""load_umt5: a umT5 text encoder from Wan's .pth, ComfyUI's safetensors (fp16 or scaled fp8) or the
transformers layout, with its tokenizer; all-or-nothing.

Order: open the file (names, shapes, dtypes only) -> layout and geometry -> every key and shape checked ->
tokenizer loaded and matched to the embedding -> only then the model is built on the meta device and filled
tensor by tensor (one copy of the weights in memory; a bad file never yields a half-loaded encoder).
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from ...checkpoints import CheckpointError, CheckpointReader, open_checkpoint
from ...checkpoints.load import check_keys, salt_header_kind
from ...checkpoints.storage import choose_dtype
from .config import UMT5Config
from .encoder import UMT5LoadedInfo, UMT5TextEncoder, check_tokenizer_matches
from .layouts import Layout, detect_config, detect_layout
from .model import UMT5Encoder
from .scaled_fp8 import FP8_DTYPES, dequantize_scaled_fp8
from .tokenizer import UMT5Tokenizer


def _describe(c: UMT5Config, preset: Optional[str]) -> str:
    name = f"preset {preset!r}" if preset else "config"
    return (f"a umT5 encoder ({name}: dim={c.dim}, layers={c.num_layers}, heads={c.num_heads}x{c.head_dim}, "
            f"ffn={c.ffn_dim}, vocab={c.vocab_size})")


def _refuse_salt_files(reader: CheckpointReader, path: str) -> None:
    kind = salt_header_kind(reader.metadata, path)
    if kind is not None:
        raise CheckpointError(f"{path}: a salt {kind.upper()} checkpoint, not a umT5 text encoder")
    if reader.metadata.get("format") == "salt-text-encoder":
        raise CheckpointError(f"{path}: the embedded default's tiny text encoder, not umT5; load it with "
                              "salt_core.text.load_text_encoder")


def _tokenizer_for(tokenizer, layout: Layout, reader: CheckpointReader, path: str, clean: str,
                   notes: list[str]) -> UMT5Tokenizer:
    if tokenizer is not None:
        if layout.spiece_key:
            notes.append(f"tokenizer from {os.fspath(tokenizer)}; the file's own {layout.spiece_key!r} is not used")
        return UMT5Tokenizer.from_file(tokenizer, clean)
    if layout.spiece_key is None:
        raise ValueError(f"{path}: no tokenizer: this file carries none (only ComfyUI's umT5 files hold a "
                         "'spiece_model' tensor); pass tokenizer= a tokenizer.json, spiece.model or the "
                         "google/umt5-xxl folder of the Wan release")
    data = reader.read(layout.spiece_key)
    if data.dtype != torch.uint8 or data.ndim != 1:
        raise CheckpointError(f"{path}: {layout.spiece_key!r} should be a 1-d uint8 tensor (a serialised "
                              f"SentencePiece model), found {data.dtype} of shape {tuple(data.shape)}")
    return UMT5Tokenizer.from_sentencepiece_bytes(data.numpy().tobytes(), f"{path} [{layout.spiece_key}]", clean)


def _weight(reader: CheckpointReader, layout: Layout, name: str, device, dtype: torch.dtype) -> torch.Tensor:
    """One weight in dtype on device; the file's tensor (often memory-mapped) is copied exactly once."""
    t = reader.read(layout.names[name])
    if name in layout.scales:
        return dequantize_scaled_fp8(t, reader.read(layout.scales[name]), dtype).to(device)
    if t.dtype in FP8_DTYPES:   # plain fp8 storage: a cast, done in bounded steps (no CPU kernels compute in fp8)
        return dequantize_scaled_fp8(t, torch.ones(()), dtype).to(device)
    return t.to(device=device, dtype=dtype, copy=True)


def load_umt5(path: str | os.PathLike, tokenizer: Optional[str | os.PathLike] = None, *,
              device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None,
              clean: str = "wan") -> UMT5TextEncoder:
    """Load a umT5 encoder and its tokenizer -> UMT5TextEncoder (info on `.info`).

    tokenizer: a tokenizer.json / spiece.model / folder; None takes the `spiece_model` a ComfyUI file carries.
    dtype: None keeps the file's (fp8 -> bfloat16). clean: "wan" (Wan's prompt cleaning) or "none"."""
    path = os.fspath(path)
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype (or None: the file's), got {dtype!r}")
    with open_checkpoint(path) as reader:
        _refuse_salt_files(reader, path)
        layout = detect_layout(reader.shapes(), path)
        config, preset = detect_config(layout, path)
        with torch.device("meta"):
            model = UMT5Encoder(config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        check_keys(expected, layout.shapes, layout.names, path, _describe(config, preset))
        notes = [*reader.notes, *layout.notes]
        dtype = choose_dtype({k: reader.infos[layout.names[k]] for k in expected}, dtype, path, notes)
        tok = _tokenizer_for(tokenizer, layout, reader, path, clean, notes)
        check_tokenizer_matches(tok, config, path)
        state = {k: _weight(reader, layout, k, device, dtype) for k in expected}
        model.load_state_dict(state, strict=True, assign=True)
    info = UMT5LoadedInfo(path, layout.format, config, preset, dtype, tok.source, tuple(notes))
    return UMT5TextEncoder(model, tok, info)

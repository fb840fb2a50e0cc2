"""Save / load a TextEncoder as one .safetensors file: weights as tensors, config and vocabulary
as JSON in the header metadata. Writes are atomic (temp file + os.replace)."""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file

from ..checkpoints import CheckpointError, atomic_write, read_safetensors_header
from .config import TextEncoderConfig
from .model import TextEncoder

FORMAT = "salt-text-encoder"
FORMAT_VERSION = "1"


def save_text_encoder(path: str | os.PathLike, encoder: TextEncoder) -> str:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(encoder.config.to_dict(), sort_keys=True),
        "vocab": json.dumps(list(encoder.vocab)),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_text_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> TextEncoder:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file (expected a text encoder .safetensors)")
    infos, metadata = read_safetensors_header(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a text encoder file (header format={metadata.get('format')!r}, "
                              f"expected {FORMAT!r})")
    try:
        config = TextEncoderConfig.from_dict(json.loads(metadata["config"]))
        vocab = json.loads(metadata["vocab"])
        encoder = TextEncoder(config, vocab)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged text encoder header ({e})") from None
    expected = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in infos.items()}
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: weights do not match the header's config: missing {missing}, unexpected {unexpected}, "
            f"wrong shape {[(k, found[k], expected[k]) for k in wrong]}")
    encoder.load_state_dict(load_file(path))
    return encoder.to(device).eval()

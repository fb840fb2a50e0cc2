"""Write the `salt_trained_with` record (VAE + text encoder by content hash, latent format) into the committed world-
chain checkpoints (benchmarks/quality/checkpoints/*.safetensors) and the embedded default's DiT: the embedded
default's vae.safetensors and text_encoder.safetensors (benchmarks/quality/chain.sh copies both there). The
trainer's own record names the VAE whose encoder built the latents (vae-local-fine.yaml's); the default's VAE is
that VAE with its decoder trained further (vae-decoder.yaml, then vae-decoder-temporal.yaml: same encoder, same
latent statistics), so it is the one to decode with. Only the header changes: each file is rewritten atomically and re-read, and every tensor is
checked to be bit-identical before the next.

    python benchmarks/quality/record_trained_with.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from salt_core.atomic import atomic_write  # noqa: E402
from salt_core.checkpoints.trained_with import HEADER_KEY, record_for  # noqa: E402
from salt_core.pipeline import DEFAULT_ASSETS  # noqa: E402

FILES = [*sorted((ROOT / "benchmarks" / "quality" / "checkpoints").glob("*.safetensors")),
         DEFAULT_ASSETS / "dit.safetensors"]


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def main() -> int:
    record = record_for(str(DEFAULT_ASSETS / "vae.safetensors"), str(DEFAULT_ASSETS / "text_encoder.safetensors"))
    added = record.to_metadata()
    for path in FILES:
        tensors, meta = _read(path)
        if meta.get(HEADER_KEY) == added[HEADER_KEY]:
            print(f"{path.relative_to(ROOT)}: already recorded")
            continue
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={**meta, **added}))
        again, new_meta = _read(path)
        assert sorted(again) == sorted(tensors) and all(torch.equal(again[k], tensors[k]) for k in tensors), path
        other = lambda m: {k: v for k, v in m.items() if k != HEADER_KEY}  # noqa: E731
        assert other(new_meta) == other(meta) and new_meta[HEADER_KEY] == added[HEADER_KEY], path
        print(f"{path.relative_to(ROOT)}: recorded {record.vae.describe()} and {record.text_encoder.describe()}; "
              f"{len(tensors)} tensors unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

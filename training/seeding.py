"""Counter-based randomness: every draw derives from (run seed, step, ...) so a resumed run, or the
same global batch split over more ranks, draws exactly the same numbers."""
from __future__ import annotations

import hashlib
import random
from typing import Sequence

import numpy as np
import torch


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts."""
    digest = hashlib.sha256(repr(tuple(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts) -> torch.Generator:
    """A CPU generator for the stream named by `parts` (e.g. (seed, step, rank, "critic"))."""
    return torch.Generator("cpu").manual_seed(derive_seed(*parts))


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed the global RNGs (torch, CUDA, python, numpy) at the start of a step."""
    s = derive_seed(seed, step, rank, "global")
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % (1 << 32))


def per_sample(seed: int, step: int, sample_ids: Sequence[int], stream: str, fn) -> torch.Tensor:
    """Stack fn(generator) over samples, each with its own stream (seed, step, global sample id, stream)."""
    return torch.stack([fn(generator(seed, step, int(i), stream)) for i in sample_ids])


def per_sample_randn(seed: int, step: int, sample_ids: Sequence[int], stream: str, shape) -> torch.Tensor:
    """[len(sample_ids), *shape] standard normals, independent of how the batch is split over ranks."""
    return per_sample(seed, step, sample_ids, stream, lambda g: torch.randn(tuple(shape), generator=g))

"""Helpers of the bit-identity test of the committed checkpoints (tests/test_reference_outputs.py)."""
from __future__ import annotations

import torch


def signature(t: torch.Tensor, probes: int = 8) -> torch.Tensor:
    """A compact float64 fingerprint of a big tensor (sum, |sum|, norm and seeded random projections): equal
    tensors give equal signatures bit for bit; any change moves them (with probability 1)."""
    flat = t.detach().flatten().double()
    g = torch.Generator().manual_seed(1234)
    rows = [flat.sum(), flat.abs().sum(), flat.norm()]
    rows += [(flat * torch.randn(flat.numel(), generator=g, dtype=torch.float64)).sum() for _ in range(probes)]
    return torch.stack(rows)

"""Deterministic, resumable batches split over ranks.

The sample stream is the concatenation of per-epoch permutations (seeded by (seed, epoch)); step s
consumes stream positions [s*B, (s+1)*B) of the global batch B, and rank r takes the r-th contiguous
slice. A batch is a function of the step alone, so resume needs only the step (the position is stored
in checkpoints as a check), and 1 rank x B equals N ranks x B/N sample for sample.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..seeding import generator


class BatchLoader:
    def __init__(self, dataset, global_batch: int, *, world_size: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True):
        if global_batch < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {global_batch}")
        if global_batch % world_size:
            raise ValueError(f"data.batch_size={global_batch} is not divisible by the {world_size} ranks")
        if len(dataset) < 1:
            raise ValueError("the dataset is empty")
        self.dataset, self.global_batch = dataset, global_batch
        self.local_batch = global_batch // world_size
        self.rank, self.seed, self.shuffle = rank, seed, shuffle
        self._perm: Optional[tuple[int, torch.Tensor]] = None

    def position(self, step: int) -> int:
        """Samples consumed before `step` (the data-sampler state)."""
        return step * self.global_batch

    def _index(self, pos: int) -> int:
        n = len(self.dataset)
        epoch, offset = divmod(pos, n)
        if not self.shuffle:
            return offset
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, torch.randperm(n, generator=generator(self.seed, epoch, "epoch")))
        return int(self._perm[1][offset])

    def batch(self, step: int) -> dict:
        """This rank's part of the global batch of `step`: stacked fields, "prompt" list, and
        "sample_id" [b] = stream positions (keys of per-sample randomness)."""
        start = self.position(step) + self.rank * self.local_batch
        ids = list(range(start, start + self.local_batch))
        items = [self.dataset[self._index(p)] for p in ids]
        out = collate(items)
        out["sample_id"] = torch.tensor(ids, dtype=torch.int64)
        return out


def collate(items: list[dict]) -> dict:
    out: dict = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) and k != "sample_id" else v for k, v in batch.items()}

"""A frame-level attention mask: which latent frames the tokens of each latent frame may attend to.

The block-causal training forwards (teacher forcing, diffusion forcing, the single pass equal to cached
generation) restrict attention per latent frame. Expanded to tokens that mask is [L, L] booleans (at Wan 1.3B
x 21 latent frames, 32760 tokens: 1 GiB; teacher forcing's doubled clip: 4 GiB), SDPA turns it into an [L, L]
additive float mask on every call, and every masked-out score is still computed. `FrameMask` keeps the [T', T']
table and derives from it what the attention needs:

* query groups: query frames whose rows are identical share one set of allowed key frames, so each group is an
  unmasked attention of its query tokens against only its key tokens (block-causal masks have one group per
  chunk; teacher forcing's 2T x 2T mask has two per chunk);
* block coverage: for a block-sparse kernel (FlexAttention), which (query block, key block) tiles are fully
  allowed, partly allowed or empty, computed from the frames each tile touches.

Tokens are frame-major: frame f owns tokens [f * n, (f + 1) * n), n = tokens per frame.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Union

import torch

TokenIndex = Union[slice, torch.Tensor]  # a contiguous token range, or [Lg] long token indices

BLOCK_MASKS_KEPT = 8  # FlexAttention block masks kept per process, least recently used dropped first
_BLOCK_MASKS: "OrderedDict[tuple, object]" = OrderedDict()


@dataclass(frozen=True)
class QueryGroup:
    """Query tokens that all attend to the same key tokens (frames listed for messages and tests)."""

    query_frames: tuple[int, ...]
    key_frames: tuple[int, ...]
    queries: TokenIndex
    keys: TokenIndex


def frame_runs(frames: list[int]) -> list[tuple[int, int]]:
    """Sorted frame indices -> maximal contiguous runs [(start, stop)], stop exclusive."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and runs[-1][1] == f:
            runs[-1] = (runs[-1][0], f + 1)
        else:
            runs.append((f, f + 1))
    return runs


def token_index(frames: list[int], tokens_per_frame: int, device: torch.device) -> TokenIndex:
    """The tokens of `frames`: a slice when they form one contiguous run, else a [len * n] long index."""
    n = tokens_per_frame
    runs = frame_runs(frames)
    if len(runs) == 1:
        return slice(runs[0][0] * n, runs[0][1] * n)
    return torch.cat([torch.arange(a * n, b * n, device=device) for a, b in runs])


def take(x: torch.Tensor, index: TokenIndex) -> torch.Tensor:
    """x: [B, heads, L, head_dim] -> the tokens of index along L (a view for a slice, a copy otherwise)."""
    return x[:, :, index] if isinstance(index, slice) else x.index_select(2, index)


class FrameMask:
    """table: [T', T'] bool (True = the query frame may attend to the key frame); tokens_per_frame: n.

    Refused at construction (before any attention runs): a table that is not square and bool, and a query frame
    that may attend to nothing (its softmax would have no key)."""

    def __init__(self, table: torch.Tensor, tokens_per_frame: int, device: Optional[torch.device] = None):
        if not isinstance(table, torch.Tensor) or table.ndim != 2 or table.shape[0] != table.shape[1]:
            shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
            raise ValueError(f"frame_mask must be a square [T', T'] tensor of latent frames, got {shape}")
        if table.dtype != torch.bool:
            raise ValueError(f"frame_mask must be bool (True = may attend), got dtype {table.dtype}")
        if tokens_per_frame < 1:
            raise ValueError(f"tokens_per_frame must be >= 1, got {tokens_per_frame}")
        rows = table.detach().to("cpu")
        empty = (~rows.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"frame_mask rows {empty} allow no key frame: every query frame must attend to at least one frame "
                "(a softmax over no keys is undefined)")
        self.frames = rows.shape[0]
        self.tokens_per_frame = tokens_per_frame
        self.device = torch.device(device) if device is not None else table.device
        self.table = rows.to(self.device)  # [T', T'] bool
        self.groups = self._groups(rows)
        # query tokens per group when the groups are consecutive token ranges in order (block-causal and teacher
        # forcing masks are), else None
        ranges = [g.queries for g in self.groups]
        consecutive = all(isinstance(r, slice) for r in ranges) and all(
            a.stop == b.start for a, b in zip(ranges, ranges[1:]))
        self.query_split = [r.stop - r.start for r in ranges] if consecutive else None

    @property
    def tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def allows_everything(self) -> bool:
        return len(self.groups) == 1 and len(self.groups[0].key_frames) == self.frames

    def _groups(self, rows: torch.Tensor) -> tuple[QueryGroup, ...]:
        distinct, row_of = torch.unique(rows, dim=0, return_inverse=True)  # [G, T'], [T']
        members = [(row_of == g).nonzero().flatten().tolist() for g in range(distinct.shape[0])]
        order = sorted(range(len(members)), key=lambda g: members[g][0])  # groups by their first query frame
        n, dev = self.tokens_per_frame, self.device
        groups = []
        for g in order:
            keys = distinct[g].nonzero().flatten().tolist()
            groups.append(QueryGroup(tuple(members[g]), tuple(keys), token_index(members[g], n, dev),
                                     token_index(keys, n, dev)))
        return tuple(groups)

    # ---- block-sparse view ---------------------------------------------------------------------------------
    def block_coverage(self, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tiles of block_size x block_size tokens -> (full, partial): [nb, nb] bool each, nb = ceil(L / block).

        A tile is full when every frame pair it touches is allowed, partial when some are, and skipped otherwise;
        tiles of a padded last block are never full.
        Computed on the CPU in float64 from the frames each block touches (nb x T' numbers, never L x L)."""
        n, L = self.tokens_per_frame, self.tokens
        starts = torch.arange(0, L, block_size)
        first, last = starts // n, (starts + block_size).clamp(max=L).sub(1) // n  # [nb] frames at block ends
        frame = torch.arange(self.frames)
        touches = ((frame >= first[:, None]) & (frame <= last[:, None])).double()  # [nb, T']
        allowed = touches @ self.table.to("cpu").double() @ touches.T  # [nb, nb] allowed frame pairs per tile
        pairs = touches.sum(1)[:, None] * touches.sum(1)[None, :]
        full = allowed == pairs
        if L % block_size:  # the last block is padded: as torch's create_block_mask, its tiles go through mask_mod
            full[-1, :] = False
            full[:, -1] = False
        return full, (allowed > 0) & ~full

    def block_mask(self, block_size: int = 128):
        """The FlexAttention BlockMask of this mask on self.device: full tiles skip the mask_mod, partial tiles
        evaluate it, empty tiles are never visited.

        Kept per (table, tokens per frame, block size, device) for the process, so every layer and every training
        step with the same mask passes the same BlockMask (and mask_mod) to the compiled kernel, which then has
        no reason to recompile."""
        key = (bytes(self.table.to("cpu").flatten().numpy()), self.frames, self.tokens_per_frame, block_size,
               str(self.device))
        if key in _BLOCK_MASKS:
            _BLOCK_MASKS.move_to_end(key)
        else:
            _BLOCK_MASKS[key] = self._build_block_mask(block_size)
            while len(_BLOCK_MASKS) > BLOCK_MASKS_KEPT:
                _BLOCK_MASKS.popitem(last=False)
        return _BLOCK_MASKS[key]

    def _build_block_mask(self, block_size: int):
        from torch.nn.attention.flex_attention import BlockMask

        full, partial = self.block_coverage(block_size)
        table = self.table  # [T', T'] bool
        # [nb * block] frame per token, padded past L with the last frame so a lookup in the padded tail stays in
        # bounds (the kernel masks those positions out itself)
        padded = full.shape[0] * block_size
        frame_of = (torch.arange(padded, device=self.device) // self.tokens_per_frame).clamp(max=self.frames - 1)

        def frame_mask_mod(b, h, q_idx, kv_idx):
            return table[frame_of[q_idx], frame_of[kv_idx]]

        def listed(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # per query block: how many key blocks, and their indices first (ascending), as [1, 1, nb(, nb)] int32
            count = tiles.sum(1, dtype=torch.int32)
            indices = torch.argsort((~tiles).to(torch.int8), dim=1, stable=True).to(torch.int32)
            return count[None, None].to(self.device), indices[None, None].to(self.device)

        kv_num, kv_idx = listed(partial)
        full_num, full_idx = listed(full)
        return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block_size,
                                        mask_mod=frame_mask_mod, seq_lengths=(self.tokens, self.tokens))

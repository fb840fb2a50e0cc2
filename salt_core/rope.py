"""3-D rotary position embedding of Wan 2.1 (frame / height / width axes, interleaved pairs)."""
from __future__ import annotations

from typing import Sequence

import torch


def axis_split(head_dim: int) -> tuple[int, int, int]:
    """Channels per axis: (t, h, w); for head_dim 128 this is (44, 42, 42)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


class RopeTable:
    """Per-axis angle tables in float64; gives cos/sin for any set of frame positions.

    Frame positions are explicit integers so that a KV cache can place frames anywhere
    (absolute frame index, or a cache-relative rank).
    """

    def __init__(self, head_dim: int, max_positions: int = 1024, theta: float = 10000.0):
        self.head_dim = head_dim
        self.max_positions = max_positions
        self.theta = theta
        self._tables: dict[torch.device, list[torch.Tensor]] = {}
        self._memo: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _axis_tables(self, device: torch.device) -> list[torch.Tensor]:
        tabs = self._tables.get(device)
        if tabs is None:
            pos = torch.arange(self.max_positions, dtype=torch.float64, device=device)
            tabs = []
            for d in axis_split(self.head_dim):
                inv = 1.0 / torch.pow(self.theta, torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)
                tabs.append(torch.outer(pos, inv))  # [max_positions, d/2]
            self._tables[device] = tabs
        return tabs

    def check_grid(self, grid_h: int, grid_w: int) -> None:
        """The spatial limit: a frame of grid_h x grid_w tokens needs that many positions per axis."""
        if max(grid_h, grid_w) > self.max_positions:
            raise ValueError(
                f"a frame of {grid_h}x{grid_w} tokens (height x width) exceeds the RoPE table of {self.max_positions} "
                f"positions per axis: at most {self.max_positions} tokens per side, i.e. "
                f"{16 * self.max_positions} pixels for Wan's 8x VAE and 2x2 patches")

    def check_positions(self, frame_positions: Sequence[int], grid_h: int, grid_w: int) -> None:
        self.check_grid(grid_h, grid_w)
        if min(frame_positions) < 0 or max(frame_positions) >= self.max_positions:
            raise ValueError(
                f"RoPE frame position {max(frame_positions)} is outside the table of {self.max_positions} positions "
                f"(frame positions {min(frame_positions)}..{max(frame_positions)}); with positions='absolute' a video "
                "cannot be longer than the table: use positions='cache_relative' with a window cache, or a shorter video"
            )

    def cos_sin(
        self, frame_positions: Sequence[int], grid_h: int, grid_w: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> cos, sin: [L, head_dim/2] for tokens ordered (frame, h, w), L = len(frames)*grid_h*grid_w."""
        key = (tuple(frame_positions), grid_h, grid_w, device, dtype)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        self.check_positions(frame_positions, grid_h, grid_w)
        with torch.inference_mode(False):  # memoised: must stay usable by autograd later
            out = self._cos_sin(frame_positions, grid_h, grid_w, device, dtype)
        self._remember(key, out)
        return out

    def _cos_sin(self, frame_positions, grid_h, grid_w, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        tf, th, tw = self._axis_tables(device)
        fpos = torch.as_tensor(list(frame_positions), dtype=torch.long, device=device)
        F = len(frame_positions)
        a_f = tf[fpos].view(F, 1, 1, -1).expand(F, grid_h, grid_w, -1)
        a_h = th[:grid_h].view(1, grid_h, 1, -1).expand(F, grid_h, grid_w, -1)
        a_w = tw[:grid_w].view(1, 1, grid_w, -1).expand(F, grid_h, grid_w, -1)
        angles = torch.cat([a_f, a_h, a_w], dim=-1).reshape(F * grid_h * grid_w, -1)
        return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)

    def rotation(self, frame_positions: Sequence[int], grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
        """-> complex64 [L, head_dim/2]: cos + i·sin of every (token, pair), tokens ordered (frame, h, w).

        The form `apply_rope` takes: one complex multiply rotates all pairs (one pass over q/k)."""
        key = ("complex", tuple(frame_positions), grid_h, grid_w, device)
        hit = self._memo.get(key)
        if hit is None:
            cos, sin = self.cos_sin(frame_positions, grid_h, grid_w, device, torch.float32)
            with torch.inference_mode(False):
                hit = torch.complex(cos, sin)
            self._remember(key, hit)
        return hit

    def _remember(self, key, value) -> None:
        if len(self._memo) > 64:
            self._memo.clear()
        self._memo[key] = value


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved (real, imag) pairs: x: [..., L, D] (any strides with a unit last stride, e.g.
    [B, H, L, D] head views); rot: complex [L, D/2] from `RopeTable.rotation`. Computed in float32,
    returned in x's dtype (and x's memory layout)."""
    xf = x.float()
    if xf.stride(-1) != 1 or xf.storage_offset() % 2 or any(st % 2 for st in xf.stride()[:-1]):
        xf = xf.contiguous()
    out = torch.view_as_real(torch.view_as_complex(xf.unflatten(-1, (-1, 2))) * rot)
    return out.flatten(-2).to(x.dtype)

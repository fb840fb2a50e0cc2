"""The KV cache of the causal DiT and its memory policies (full, window, sink_window; absolute or cache-relative
positions).

Layout, per layer: one preallocated buffer of frame slots, `[B, heads, slots * tokens_per_frame, head_dim]`.
Slots [0, S) hold sink frames, the next slots form a ring of the last N frames (or, for `full`, grow
until `max_frames`). The current chunk is written to the slots just past the valid prefix ("scratch"),
so attention always reads one contiguous prefix and never concatenates. Committing a chunk (the
context pass) moves its K/V from scratch into the ring; eviction is overwriting the oldest slot.
Attention is permutation-invariant over keys, so ring order never matters: positions live in the
keys themselves (`absolute`: rotated by the true frame index) or are assigned at commit time by rank
(`cache_relative`: un-rotated keys are kept, and cached frames are re-indexed 0..n-1).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .fields import fields_from_dict
from .rope import RopeTable, apply_rope

POLICIES = ("full", "window", "sink_window")
POSITIONS = ("absolute", "cache_relative")


@dataclass(frozen=True)
class CachePolicy:
    """Which past latent frames the cache keeps. Sizes count latent frames, excluding the current chunk."""

    kind: str = "full"
    window_frames: int = 0  # `window`/`sink_window`: the last N past frames kept
    sink_frames: int = 0  # `sink_window`: the first S frames kept forever
    max_frames: int = 1024  # `full`: hard ceiling on cached frames
    positions: str = "absolute"
    context_t: float = 0.0  # timestep of the context pass that writes a finished chunk's K/V
    recache_on_switch: bool = True  # prompt switch: recompute retained frames' K/V under the new prompt
    recache_keeps_sink: bool = False  # ... but keep the sink's K/V from the earlier prompt (LongLive's global_sink)

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ValueError(f"cache policy kind {self.kind!r} is unknown; allowed: {list(POLICIES)}")
        if self.positions not in POSITIONS:
            raise ValueError(f"cache positions {self.positions!r} is unknown; allowed: {list(POSITIONS)}")
        if self.kind in ("window", "sink_window") and self.window_frames < 1:
            raise ValueError(f"cache policy {self.kind!r} needs window_frames >= 1, got {self.window_frames}")
        if self.kind == "sink_window" and self.sink_frames < 1:
            raise ValueError(f"cache policy 'sink_window' needs sink_frames >= 1, got {self.sink_frames}")
        if self.kind != "sink_window" and self.sink_frames:
            raise ValueError(f"sink_frames={self.sink_frames} only applies to 'sink_window', not {self.kind!r}")
        if self.kind == "full" and self.max_frames < 1:
            raise ValueError(f"cache policy 'full' needs max_frames >= 1, got {self.max_frames}")
        if not 0.0 <= self.context_t <= 1000.0:
            raise ValueError(f"context_t must be in [0, 1000], got {self.context_t}")

    @property
    def sink(self) -> int:
        return self.sink_frames if self.kind == "sink_window" else 0

    @property
    def capacity(self) -> int:
        """Most past frames ever held."""
        return self.max_frames if self.kind == "full" else self.sink + self.window_frames

    def keeps(self, key_frame: int, chunk_start: int) -> bool:
        """Is past frame `key_frame` still cached when the chunk starting at `chunk_start` is generated?"""
        if self.kind == "full":
            return True
        return key_frame < self.sink or key_frame >= chunk_start - self.window_frames

    def frame_mask(self, num_frames: int, chunk_frames: int) -> torch.Tensor:
        """The single-pass equivalent of chunk-by-chunk generation: [T_query, T_key] bool, True = attends."""
        if num_frames % chunk_frames:
            raise ValueError(f"num_frames={num_frames} is not a multiple of chunk_frames={chunk_frames}")
        mask = torch.zeros(num_frames, num_frames, dtype=torch.bool)
        for q in range(num_frames):
            start = (q // chunk_frames) * chunk_frames
            mask[q, start : start + chunk_frames] = True
            for k in range(start):
                mask[q, k] = self.keeps(k, start)
        return mask

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CachePolicy":
        return cls(**fields_from_dict(cls, d))

    def largest_position(self, latent_frames: int, chunk_frames: int) -> int:
        """The largest RoPE frame index a video of `latent_frames` in chunks of `chunk_frames` uses: the last frame
        index with absolute positions; with cache_relative the cached frames' ranks plus the chunk."""
        if self.positions == "absolute":
            return latent_frames - 1
        return min(latent_frames - chunk_frames, self.capacity) + chunk_frames - 1

    def check_length(self, latent_frames: int, chunk_frames: int, rope_positions: int) -> None:
        """Refuse, before any compute, a video whose positions would run past the RoPE table, naming the limit."""
        top = self.largest_position(latent_frames, chunk_frames)
        if top < rope_positions:
            return
        longest = rope_positions if self.positions == "absolute" else None
        if self.positions == "absolute":
            raise ValueError(
                f"positions 'absolute' index latent frames by their true number, up to {top} here, but the model's "
                f"RoPE table has {rope_positions} positions: at most {longest} latent frames "
                f"({1 + 4 * (longest - 1)} video frames) with absolute positions; use positions 'cache_relative' "
                "with a 'window' or 'sink_window' cache (no length limit)")
        raise ValueError(
            f"a '{self.kind}' cache keeps {min(latent_frames - chunk_frames, self.capacity)} past latent frames here, "
            f"which with cache_relative positions need indices up to {top}; the model's RoPE table has "
            f"{rope_positions}: use a 'window' or 'sink_window' cache (no length limit) or at most {rope_positions} "
            "latent frames")

    def describe(self) -> str:
        """One line for people: 'window 6 (cache_relative), context_t 0'."""
        if self.kind == "full":
            size = f"full (up to {self.max_frames} frames)"
        elif self.kind == "window":
            size = f"window {self.window_frames}"
        else:
            size = f"sink {self.sink_frames} + window {self.window_frames}"
        kept = ", re-cache keeps the sink" if self.recache_keeps_sink and self.sink else ""
        return f"{size}, {self.positions} positions, context_t {self.context_t:g}{kept}"


@dataclass
class ChunkPlan:
    """What one forward over a chunk does to the cache; shared by every layer."""

    frames: int  # F frames in this call
    scratch_start: int  # first frame slot of the scratch area (= valid frames before the call)
    q_rot: torch.Tensor  # complex [F*T, D/2]: rotation of this chunk's queries/keys
    commit_slots: Optional[list[int]]  # frame slot per frame when committing, else None
    commit_src: Optional[torch.Tensor] = None  # [F*T] token indices of the scratch area
    commit_dst: Optional[torch.Tensor] = None  # [F*T] token indices of the target slots
    ranks_rot: Optional[torch.Tensor] = None  # cache_relative: complex rotation of all valid slots after commit


class LayerKV:
    """K/V storage of one transformer layer (self-attention frames + cross-attention prompt)."""

    def __init__(self, shape: tuple[int, ...], keep_raw: bool, device, dtype):
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # [B, H, slots*T, D] rotated keys
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.k_raw = torch.zeros(shape, device=device, dtype=dtype) if keep_raw else None
        self.cross_k: Optional[torch.Tensor] = None  # [B, H, L_ctx, D]
        self.cross_v: Optional[torch.Tensor] = None

    def grow(self, new_tokens: int) -> None:
        for name in ("k", "v", "k_raw"):
            buf = getattr(self, name)
            if buf is not None:
                bigger = buf.new_zeros(*buf.shape[:2], new_tokens, buf.shape[3])
                bigger[:, :, : buf.shape[2]] = buf
                setattr(self, name, bigger)

    def attend(self, q, k, v, plan: ChunkPlan, tokens_per_frame: int, attn) -> torch.Tensor:
        """q, k, v: [B, H, F*T, D] un-rotated -> attention output [B, H, F*T, D] over cache + chunk."""
        T = tokens_per_frame
        q = apply_rope(q, plan.q_rot)
        k_rot = apply_rope(k, plan.q_rot)
        s0 = plan.scratch_start * T
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            # Out of place under autograd: the buffers are never part of a graph.
            keys = torch.cat([self.k[:, :, :s0].to(k_rot.dtype), k_rot], dim=2)
            values = torch.cat([self.v[:, :, :s0].to(v.dtype), v], dim=2)
            if plan.commit_slots is not None:
                raise RuntimeError("committing to the KV cache must run without gradient (a context pass)")
            return attn(q, keys, values, None)
        s1 = s0 + plan.frames * T
        self.k[:, :, s0:s1] = k_rot
        self.v[:, :, s0:s1] = v
        if self.k_raw is not None:
            self.k_raw[:, :, s0:s1] = k
        # a cache kept in another dtype than the computation (bf16 caches of an fp32 model) is read in q's dtype
        out = attn(q, self.k[:, :, :s1].to(q.dtype), self.v[:, :, :s1].to(q.dtype), None)
        if plan.commit_slots is not None:
            self._commit(plan, T)
        return out

    def _commit(self, plan: ChunkPlan, T: int) -> None:
        for buf in (self.k, self.v, self.k_raw):
            if buf is not None:
                buf.index_copy_(2, plan.commit_dst, buf.index_select(2, plan.commit_src))
        if plan.ranks_rot is not None:  # cache_relative: re-rotate every valid slot by its new rank
            n = plan.ranks_rot.shape[0]
            self.k[:, :, :n] = apply_rope(self.k_raw[:, :, :n], plan.ranks_rot)


class KVCache:
    """Self- and cross-attention K/V for every layer of one causal DiT, under a memory policy."""

    def __init__(
        self,
        policy: CachePolicy,
        *,
        num_layers: int,
        batch: int,
        heads: int,
        head_dim: int,
        grid_hw: tuple[int, int],
        max_chunk_frames: int,
        rope: RopeTable,
        device,
        dtype,
        latent_channels: Optional[int] = None,
    ):
        self.policy = policy
        self.grid_hw = grid_hw
        self.tokens_per_frame = grid_hw[0] * grid_hw[1]
        self.max_chunk_frames = max_chunk_frames
        self.rope = rope
        self.device, self.dtype = torch.device(device), dtype
        self._shape = (batch, heads, head_dim)
        self._num_layers = num_layers
        self.latent_channels = latent_channels
        if policy.kind == "full":
            slots = min(policy.max_frames, max(8 * max_chunk_frames, 24))
        else:
            slots = policy.capacity
        self._alloc(slots + max_chunk_frames)

    # ---- allocation ---------------------------------------------------------------------------
    def _alloc(self, total_slots: int) -> None:
        B, H, D = self._shape
        shape = (B, H, total_slots * self.tokens_per_frame, D)
        keep_raw = self.policy.positions == "cache_relative"
        self.layers = [LayerKV(shape, keep_raw, self.device, self.dtype) for _ in range(self._num_layers)]
        self.total_slots = total_slots
        self.slot_frame: list[int] = [-1] * total_slots  # true frame index per slot (-1 empty)
        self.slot_latent: list[Optional[torch.Tensor]] = [None] * total_slots  # [B, C, 1, h, w] per slot
        self.committed = 0  # frames committed since the last reset

    def _ensure_slots(self, needed: int) -> None:
        if needed <= self.total_slots:
            return
        new_total = max(needed, min(2 * self.total_slots, self.policy.max_frames + self.max_chunk_frames))
        for layer in self.layers:
            layer.grow(new_total * self.tokens_per_frame)
        self.slot_frame += [-1] * (new_total - self.total_slots)
        self.slot_latent += [None] * (new_total - self.total_slots)
        self.total_slots = new_total

    @property
    def valid_frames(self) -> int:
        return min(self.committed, self.policy.capacity)

    def memory_bytes(self) -> int:
        total = 0
        for layer in self.layers:
            for t in (layer.k, layer.v, layer.k_raw, layer.cross_k, layer.cross_v):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total

    # ---- prompt -------------------------------------------------------------------------------
    def has_prompt(self) -> bool:
        return self.layers[0].cross_k is not None

    def reset_prompt(self) -> None:
        for layer in self.layers:
            layer.cross_k = layer.cross_v = None

    @property
    def sink_held(self) -> int:
        """Sink frames in the cache (the first frames committed, in slots 0..sink_held-1)."""
        return min(self.committed, self.policy.sink)

    def reset_frames(self, keep_sink: bool = False) -> None:
        """Forget the cached frames (keep_sink: all but the sink's, which stay in their slots with their K/V)."""
        kept = self.sink_held if keep_sink else 0
        self.slot_frame = self.slot_frame[:kept] + [-1] * (self.total_slots - kept)
        self.slot_latent = self.slot_latent[:kept] + [None] * (self.total_slots - kept)
        self.committed = kept

    def retained(self, skip_sink: bool = False) -> list[tuple[int, torch.Tensor]]:
        """(true frame index, clean latent [B, C, 1, h, w]) of cached frames, oldest first (skip_sink: without
        the sink's, which are the first frames committed)."""
        first = self.sink_held if skip_sink else 0
        items = [(f, self.slot_latent[s]) for s, f in enumerate(self.slot_frame[: self.valid_frames]) if s >= first]
        return sorted(items, key=lambda it: it[0])

    # ---- planning -----------------------------------------------------------------------------
    def _slot_for(self, m: int) -> int:
        """Slot of the m-th committed frame (0-based since reset)."""
        p = self.policy
        if p.kind == "full":
            if m >= p.max_frames:
                raise ValueError(
                    f"cache policy 'full' holds at most max_frames={p.max_frames} latent frames; "
                    "raise max_frames or use 'window' / 'sink_window'"
                )
            return m
        if m < p.sink:
            return m
        return p.sink + (m - p.sink) % p.window_frames

    def plan(self, frame_indices: Sequence[int], commit: bool) -> ChunkPlan:
        F = len(frame_indices)
        if F > self.max_chunk_frames:
            raise ValueError(f"chunk of {F} frames exceeds the cache's max_chunk_frames={self.max_chunk_frames}")
        n_valid = self.valid_frames
        self._ensure_slots(n_valid + F)
        gh, gw = self.grid_hw
        if self.policy.positions == "absolute":
            positions = list(frame_indices)
        else:
            positions = list(range(n_valid, n_valid + F))
        rot = self.rope.rotation(positions, gh, gw, self.device)
        slots = [self._slot_for(self.committed + j) for j in range(F)] if commit else None
        plan = ChunkPlan(F, n_valid, rot, slots)
        if commit:
            T = self.tokens_per_frame
            plan.commit_src = torch.arange(n_valid * T, (n_valid + F) * T, device=self.device)
            plan.commit_dst = (torch.tensor(slots, device=self.device).repeat_interleave(T) * T
                               + torch.arange(T, device=self.device).repeat(F))
        if commit and self.policy.positions == "cache_relative":
            after = self._frames_after_commit(frame_indices, slots)
            order = sorted(range(len(after)), key=lambda s: after[s])
            rank = [0] * len(after)
            for r, s in enumerate(order):
                rank[s] = r
            plan.ranks_rot = self.rope.rotation(rank, gh, gw, self.device)
        return plan

    def _frames_after_commit(self, frame_indices: Sequence[int], slots: list[int]) -> list[int]:
        frames = list(self.slot_frame[: self.valid_frames])
        for f, s in zip(frame_indices, slots):
            if s < len(frames):
                frames[s] = f
            else:
                frames.append(f)
        return frames

    def finish(self, plan: ChunkPlan, frame_indices: Sequence[int], latents: Optional[torch.Tensor]) -> None:
        """Book-keeping after every layer ran `plan`. latents: [B, C, F, h, w] clean inputs of a commit."""
        if plan.commit_slots is None:
            return
        for j, (f, s) in enumerate(zip(frame_indices, plan.commit_slots)):
            self.slot_frame[s] = f
            self.slot_latent[s] = None if latents is None else latents[:, :, j : j + 1].detach()
        self.committed += plan.frames

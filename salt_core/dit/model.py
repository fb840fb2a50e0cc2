"""WanDiT: the Wan 2.1 text-to-video transformer, in bidirectional and KV-cached causal modes.

Flow prediction: v = noise - x0. Timesteps are floats in [0, 1000], one per sample `[B]` or one per
latent frame `[B, T]` (causal students denoise chunks at different noise levels).
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import DiTConfig
from ..kv_cache import CachePolicy, KVCache
from .attention import Attention
from .blocks import WanBlock, WanHead
from .frame_mask import FrameMask
from .layers import Linear, TanhGELU, compute_dtype, init_like_wan, timestep_sinusoid
from ..rope import RopeTable
from ..schedules import FLOAT_TIMESTEPS, TimestepConvention


class WanDiT(nn.Module):
    def __init__(self, config: DiTConfig, attention_backend: str = "sdpa"):
        super().__init__()
        c = config
        self.config = c
        self.patch_embedding = nn.Conv3d(c.in_dim, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.text_embedding = nn.Sequential(Linear(c.text_dim, c.dim), TanhGELU(), Linear(c.dim, c.dim))
        self.time_embedding = nn.Sequential(Linear(c.freq_dim, c.dim), nn.SiLU(), Linear(c.dim, c.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), Linear(c.dim, 6 * c.dim))
        self.blocks = nn.ModuleList(
            WanBlock(c.dim, c.ffn_dim, c.num_heads, c.qk_norm, c.cross_attn_norm, c.eps) for _ in range(c.num_layers)
        )
        self.head = WanHead(c.dim, c.out_dim, c.patch_size, c.eps)
        self.rope = RopeTable(c.head_dim, c.rope_max_positions, c.rope_theta)
        self.attention = Attention(attention_backend)
        self.gradient_checkpointing = False
        # How noise levels become this model's timestep input; set from the checkpoint header on load.
        self.timestep_convention: TimestepConvention = FLOAT_TIMESTEPS
        # dtype of the KV caches it makes (None: its weights'); bf16 halves them under bf16 autocast training
        self.cache_dtype: Optional[torch.dtype] = None
        # Where the model computes when some weights live elsewhere and are brought in per call (a host's
        # low-VRAM loading sets it); None = where the patch embedding is.
        self.run_device: Optional[torch.device] = None
        self.block_swap = None  # a salt_core.dit.offload.BlockSwap streaming some blocks in, or None
        if not any(p.is_meta for p in self.parameters()):
            init_like_wan(self)

    # ---- configuration ------------------------------------------------------------------------
    def set_attention_backend(self, backend: str) -> None:
        self.attention = Attention(backend)

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        """The compute device: inputs, caches and streamed weights go here."""
        return self.run_device if self.run_device is not None else self.patch_embedding.weight.device

    def iter_blocks(self) -> Iterator[WanBlock]:
        """The transformer blocks in order; with a block swap, each streamed block holds its weights on the
        compute device while the loop is at it."""
        if self.block_swap is None:
            return iter(self.blocks)
        return self.block_swap.iterate(self.device)

    # ---- embeddings ---------------------------------------------------------------------------
    def embed_context(self, context: torch.Tensor) -> torch.Tensor:
        """context: [B, L, text_dim] text-encoder states -> [B, max(L, text_len), dim].

        Zero-padded to text_len before the MLP, as the reference (padded rows are attended)."""
        if context.ndim != 3 or context.shape[-1] != self.config.text_dim:
            raise ValueError(
                f"context must be [B, L, text_dim={self.config.text_dim}], got shape {tuple(context.shape)}"
            )
        if context.shape[1] == 0:
            raise ValueError("context is empty (0 tokens): give a prompt embedding")
        pad = self.config.text_len - context.shape[1]
        if pad > 0:
            context = torch.cat([context, context.new_zeros(context.shape[0], pad, context.shape[2])], dim=1)
        return self.text_embedding(context.to(self.dtype))

    def embed_time(self, t: torch.Tensor, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """t: [B] or [B, F] -> e: [B, F', dim], e0: [B, F', 6, dim] (float32), F' = 1 for a per-sample t
        (one embedding broadcast over every frame) and F for a per-frame t."""
        t = torch.as_tensor(t, device=self.device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim == 1 and t.shape[0] == batch:
            t = t.unsqueeze(1)
        if tuple(t.shape) not in ((batch, 1), (batch, frames)):
            raise ValueError(f"timestep must be [B]={batch} or [B, F]=[{batch}, {frames}], got {tuple(t.shape)}")
        dt = compute_dtype(self.time_embedding[0])
        e = self.time_embedding(timestep_sinusoid(t, self.config.freq_dim).to(dt)).float()
        e0 = self.time_projection(e.to(dt)).float().unflatten(-1, (6, self.config.dim))
        return e, e0

    def patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """x: [B, C, T, H, W] -> tokens [B, L, dim] (float32) and grid (T', H', W')."""
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_dim:
            raise ValueError(f"latents must be [B, C={c.in_dim}, T, H, W], got shape {tuple(x.shape)}")
        pt, ph, pw = c.patch_size
        if x.shape[2] % pt or x.shape[3] % ph or x.shape[4] % pw:
            raise ValueError(
                f"latent size T×H×W = {tuple(x.shape[2:])} must be divisible by the patch size {c.patch_size}"
            )
        # A stride = kernel Conv3d is a linear map of non-overlapping patches; as a matmul it avoids
        # the slow CPU conv3d path. Patch feature order (c, pt, ph, pw) matches the conv weight.
        grid = (x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw)
        patches = rearrange(x.to(self.dtype), "b c (f pt) (h ph) (w pw) -> b (f h w) (c pt ph pw)",
                            pt=pt, ph=ph, pw=pw)  # [B, L, C·pt·ph·pw], tokens in (frame, row, column) order
        w = self.patch_embedding.weight.to(patches.device)  # a host may keep this small layer elsewhere
        b = self.patch_embedding.bias
        y = torch.nn.functional.linear(patches, w.view(w.shape[0], -1), None if b is None else b.to(patches.device))
        return y.float(), grid

    def unpatchify(self, y: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """y: [B, L, prod(patch)*out] -> [B, out, T, H, W]"""
        c = self.config
        pt, ph, pw = c.patch_size
        f, h, w = grid
        return rearrange(y, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ph, pw=pw,
                         c=c.out_dim)

    # ---- bidirectional / masked single pass ---------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        *,
        frame_mask: Optional[torch.Tensor] = None,
        frame_positions: Optional[Sequence[int]] = None,
        return_features: Sequence[int] = (),
        features_only: bool = False,
    ):
        """x: [B, C, T, H, W] noisy latents; t: [B] or [B, T]; context: [B, L, text_dim] -> v [B, C, T, H, W].

        frame_mask: [T', T'] bool at latent-frame granularity (True = may attend), e.g. the block-causal
        or banded mask of a cache policy; None = full bidirectional attention. Every row needs a True entry.
        It is never expanded to tokens: attention runs per group of frames, or block-sparse (see FrameMask).
        return_features: block indices whose outputs are also returned, as (v, {index: [B, L, dim]}).
        features_only: stop after the last of return_features and return (None, features) (e.g. a teacher whose
        block-20 tokens are all a loss needs: the later blocks and the head never run).
        """
        if features_only and not return_features:
            raise ValueError("features_only needs return_features: the block outputs to stop after")
        B = x.shape[0]
        tokens, grid = self.patchify(x)
        f, gh, gw = grid
        positions = list(range(f)) if frame_positions is None else list(frame_positions)
        if len(positions) != f:
            raise ValueError(f"frame_positions has {len(positions)} entries for {f} latent frames")
        rope = self.rope.rotation(positions, gh, gw, x.device)
        mask = None
        if frame_mask is not None:
            if tuple(frame_mask.shape) != (f, f):
                raise ValueError(f"frame_mask must be [{f}, {f}], got {tuple(frame_mask.shape)}")
            mask = FrameMask(frame_mask, tokens_per_frame=gh * gw, device=x.device)  # never a token mask
        e, e0 = self.embed_time(t, B, f)
        ctx = self.embed_context(context)
        features = {}
        for i, block in enumerate(self.iter_blocks()):
            kv = block.cross_attn.context_kv(ctx)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, e0, kv, rope, self.attention, mask, use_reentrant=False)
            else:
                tokens = block(tokens, e0, kv, rope, self.attention, mask)
            if i in return_features:
                features[i] = tokens
                if features_only and len(features) == len(set(return_features)):
                    return None, features
        v = self.unpatchify(self.head(tokens, e).float(), grid)
        return (v, features) if return_features else v

    # ---- causal, chunk by chunk against a KV cache ---------------------------------------------
    def new_cache(
        self, policy: CachePolicy, *, batch: int, latent_hw: tuple[int, int], chunk_frames: int
    ) -> KVCache:
        """An empty cache for latents of spatial size latent_hw (H, W) and chunks of chunk_frames."""
        c = self.config
        if c.patch_size[0] != 1:
            raise ValueError(f"causal mode needs a temporal patch size of 1, got {c.patch_size}")
        ph, pw = c.patch_size[1:]
        if latent_hw[0] % ph or latent_hw[1] % pw:
            raise ValueError(f"latent H×W {latent_hw} must be divisible by the patch size {(ph, pw)}")
        return KVCache(
            policy,
            num_layers=c.num_layers,
            batch=batch,
            heads=c.num_heads,
            head_dim=c.head_dim,
            grid_hw=(latent_hw[0] // ph, latent_hw[1] // pw),
            max_chunk_frames=chunk_frames,
            rope=self.rope,
            device=self.device,
            dtype=self.cache_dtype or self.dtype,
            latent_channels=c.in_dim,
        )

    def set_prompt(self, cache: KVCache, context: torch.Tensor) -> None:
        """Compute the cross-attention K/V of a prompt for every layer (replaces any previous prompt), in the
        caller's grad mode (under torch.no_grad() for inference; with gradient they keep their graph)."""
        ctx = self.embed_context(context.to(self.device))
        for block, layer in zip(self.iter_blocks(), cache.layers):
            layer.cross_k, layer.cross_v = block.cross_attn.context_kv(ctx)

    def forward_chunk(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cache: KVCache,
        frame_indices: Sequence[int],
        *,
        commit: bool = False,
        return_features: Sequence[int] = (),
    ):
        """One chunk against the cache. x: [B, C, F, H, W]; t: [B] or [B, F]; frame_indices: true indices.

        commit=True is the context pass: the chunk's K/V (and its latents, for re-caching) are written
        into the cache under its policy; it must run without gradient. Returns v [B, C, F, H, W]
        (with return_features, (v, {index: [B, L, dim]})).
        """
        if not cache.has_prompt():
            raise ValueError("the KV cache has no prompt: call set_prompt(cache, context) first")
        B = x.shape[0]
        tokens, grid = self.patchify(x)
        f = grid[0]
        if len(frame_indices) != f:
            raise ValueError(f"frame_indices has {len(frame_indices)} entries for a chunk of {f} latent frames")
        if tuple(grid[1:]) != cache.grid_hw:
            raise ValueError(f"chunk token grid {grid[1:]} differs from the cache's {cache.grid_hw}")
        plan = cache.plan(frame_indices, commit)
        e, e0 = self.embed_time(t, B, f)
        features = {}
        for i, (block, layer) in enumerate(zip(self.iter_blocks(), cache.layers)):
            kv = (layer.cross_k, layer.cross_v)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, e0, kv, None, self.attention, None, layer, plan, use_reentrant=False)
            else:
                tokens = block(tokens, e0, kv, None, self.attention, None, layer, plan)
            if i in return_features:
                features[i] = tokens
        cache.finish(plan, frame_indices, x if commit else None)
        v = self.unpatchify(self.head(tokens, e).float(), grid)
        return (v, features) if return_features else v

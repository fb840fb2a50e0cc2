"""Wan 2.1 causal 3-D conv VAE: encoder, decoder and the `WanVAE` wrapper.

Module names equal the official checkpoint keys (`encoder.conv1`, `encoder.downsamples.N`,
`encoder.middle`, `encoder.head`, `conv1`, `conv2`, `decoder.conv1`, `decoder.middle`,
`decoder.upsamples.N`, `decoder.head`), so official / ComfyUI state dicts load as they are.

Time: the encoder reads frame 0, then chunks of `temporal_factor` frames (1, 4, 4, ...);
T = 1 + 4k pixel frames -> k + 1 latent frames. The decoder reads one latent frame at a
time; latent frame 0 -> 1 pixel frame, each later one -> 4. Causal-conv state between
chunks lives in a `FeatureCache`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import VAEConfig
from .layers import (AttentionBlock, CausalConv3d, FeatureCache, Resample, ResidualBlock, RMSNorm, fast_layout,
                     run_streaming)
from .streaming import StreamingDecoder, iter_decode

RGB = 3


@dataclass(frozen=True)
class ConvSite:
    """A conv of the decoder and the resolution it runs at (for memory and receptive-field arithmetic)."""

    conv: nn.Module  # CausalConv3d or nn.Conv2d
    scale: int  # pixels per latent cell of its input along H and W (1 = latent resolution)
    frames: int  # input frames per latent frame once streaming (the first latent frame gives 1)


def _middle(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(dim, dim, dropout), AttentionBlock(dim), ResidualBlock(dim, dim, dropout))


def _head(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(dim), nn.SiLU(), CausalConv3d(dim, out_dim, 3, padding=1))


def cache_group(x: Tensor, cache: FeatureCache) -> Tensor:
    """Mark x (a chunk of one temporal group) as the start of a new group in `cache`; returns x."""
    cache.start_group()
    return x


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, (CausalConv3d, nn.Conv2d))


class Encoder3d(nn.Module):
    """[B, 3, T, H, W] chunk -> [B, 2*z_dim, T', H/s, W/s] (mu and log-variance, before `conv1`)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(RGB, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim, cfg.dropout))
                in_dim = out_dim
            if i < len(cfg.temporal_downsample):
                blocks.append(Resample(out_dim, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)
        self.middle = _middle(dims[-1], cfg.dropout)
        self.head = _head(dims[-1], 2 * cfg.z_dim)

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        x = self.conv1(fast_layout(x), cache)
        x = run_streaming(self.downsamples, x, cache)
        x = run_streaming(self.middle, x, cache)
        return run_streaming(self.head, x, cache).contiguous()


class Decoder3d(nn.Module):
    """[B, z_dim, t, h, w] chunk -> [B, 3, T', h*s, w*s] (before clamping)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.temporally_local = cfg.temporally_local
        self.context = cfg.decoder_context
        mult = (cfg.dim_mult[-1], *reversed(cfg.dim_mult))
        dims = [cfg.dim * m for m in mult]
        temporal_upsample = tuple(reversed(cfg.temporal_downsample))
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0], cfg.dropout)
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2  # the previous upsample halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim, cfg.dropout))
                in_dim = out_dim
            if i < len(temporal_upsample):
                blocks.append(Resample(out_dim, "upsample3d" if temporal_upsample[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)
        self.head = _head(dims[-1], RGB)

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        return self.upsample(self.trunk(x, cache), cache)

    def conv_sites(self, part: str) -> list[ConvSite]:
        """Every conv of `part` ("trunk" or "upsample"), in order, with its resolution and frame rate."""
        if part == "trunk":
            return [ConvSite(m, 1, 1) for m in (self.conv1, *self.middle.modules()) if _is_conv(m)]
        if part != "upsample":
            raise ValueError(f"Decoder3d.conv_sites: part={part!r}; allowed: ['trunk', 'upsample']")
        sites, scale, frames = [], 1, 1
        for block in self.upsamples:
            if isinstance(block, Resample):
                if block.mode == "upsample3d":
                    sites.append(ConvSite(block.time_conv, scale, frames))
                    frames *= 2
                scale *= 2
                sites.append(ConvSite(block.resample[1], scale, frames))
            else:
                sites += [ConvSite(m, scale, frames) for m in block.modules() if _is_conv(m)]
        return sites + [ConvSite(m, scale, frames) for m in self.head.modules() if _is_conv(m)]

    def trunk(self, x: Tensor, cache: FeatureCache) -> Tensor:
        """The part at latent resolution with frame-wide attention: [B, z, t, h, w] -> [B, C, t, h, w]."""
        if self.temporally_local and self.context:
            return self._trunk_in_windows(x, cache)
        return self._per_group(self._trunk, x, cache)

    def _trunk_in_windows(self, x: Tensor, cache: FeatureCache) -> Tensor:
        """Latent frame k's features from the window of frames k-context..k (fewer at the stream's start), each
        window starting a new group: the frames before the chunk come from the stream's cache."""
        past = cache.past_inputs(self.conv1)                           # [B, z, <= context, h, w] or None
        frames = x if past is None else torch.cat([past, x], dim=2)
        first = frames.shape[2] - x.shape[2]
        out = [self._trunk(cache_group(frames[:, :, max(0, k - self.context):k + 1], cache), cache)[:, :, -1:]
               for k in range(first, frames.shape[2])]
        cache.keep_inputs(self.conv1, frames[:, :, -self.context:])
        return torch.cat(out, dim=2)

    def upsample(self, x: Tensor, cache: FeatureCache) -> Tensor:
        """The purely convolutional rest (local: a finite spatial receptive field, no attention):
        trunk features [B, C, t, h, w] -> pixels [B, 3, T', h*s, w*s] (before clamping)."""
        return self._per_group(self._upsample, x, cache)

    def _trunk(self, x: Tensor, cache: FeatureCache) -> Tensor:
        x = self.conv1(fast_layout(x), cache)
        return run_streaming(self.middle, x, cache)

    def _upsample(self, x: Tensor, cache: FeatureCache) -> Tensor:
        x = run_streaming(self.upsamples, fast_layout(x), cache)
        return run_streaming(self.head, x, cache).contiguous()

    def _per_group(self, part, x: Tensor, cache: FeatureCache) -> Tensor:
        """part(x, cache) on [B, C, t, h, w]; when temporally local, one latent frame at a time, each starting
        a new group (past taps zero), so no latent frame's pixels depend on an earlier latent frame."""
        if not self.temporally_local:
            return part(x, cache)
        return torch.cat([part(cache_group(step, cache), cache) for step in x.split(1, dim=2)], dim=2)


class WanVAE(nn.Module):
    """Wan 2.1 video VAE. Latents returned by `encode` and taken by `decode` are raw (un-normalised);
    `normalize` / `denormalize` map to and from the diffusion model's space."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else VAEConfig()
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)
        stat_shape = (1, cfg.z_dim, 1, 1, 1)
        # Not in the state dict: the statistics belong to the config, not to the weights file.
        self.register_buffer("latent_mean", torch.tensor(cfg.latent_mean).view(stat_shape), persistent=False)
        self.register_buffer("latent_std", torch.tensor(cfg.latent_std).view(stat_shape), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    # ---- encode -------------------------------------------------------------------------------

    def encode(self, video: Tensor) -> Tensor:
        """video: [B, 3, T, H, W] in [-1, 1], T = 1 + 4k -> raw latent mean mu: [B, z, k+1, H/8, W/8]."""
        return self.encode_moments(video)[0]

    def encode_moments(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """Like `encode`, returning (mu, log_var) of the posterior, each [B, z, k+1, H/8, W/8]."""
        video = self.validate_video(video, "WanVAE.encode")
        cache = FeatureCache()
        chunks = [video[:, :, :1]]
        if video.shape[2] > 1:
            chunks += list(video[:, :, 1:].split(self.config.temporal_factor, dim=2))
        local = self.config.temporally_local
        moments = torch.cat([self.conv1(self.encoder(cache_group(chunk, cache) if local else chunk, cache))
                             for chunk in chunks], dim=2)
        mu, log_var = moments.chunk(2, dim=1)
        return mu, log_var

    # ---- decode -------------------------------------------------------------------------------

    def decode(self, z: Tensor, frames_per_step: int = 1) -> Tensor:
        """z: raw latents [B, z, t, h, w] -> video [B, 3, 1 + 4(t-1), 8h, 8w], clamped to [-1, 1].

        `frames_per_step` latent frames go through the decoder at a time (1 = official, least memory);
        any value gives the same video up to float rounding.
        """
        self.validate_latent(z, "WanVAE.decode")
        chunks = iter_decode(self, z, chunk_frames=frames_per_step, frames_per_step=frames_per_step)
        return torch.cat(list(chunks), dim=2)

    def streaming_decoder(self, frames_per_step: int | None = 1, tiling=None) -> StreamingDecoder:
        """A decoder that takes latents a chunk at a time and keeps the causal state between calls.
        frames_per_step=None: whole chunks per decoder pass when they fit a memory budget (faster; one
        latent frame per pass when tiled). tiling: a `DecodeTiling` whose tile or budget is set gives a
        `TiledStreamingDecoder`."""
        if tiling is not None and tiling.active:
            from .tiled import TiledStreamingDecoder

            return TiledStreamingDecoder(self, tiling.tile, tiling.overlap, tiling.memory_budget,
                                         frames_per_step=frames_per_step or 1)
        return StreamingDecoder(self, frames_per_step=frames_per_step)

    def forward(self, video: Tensor) -> Tensor:
        """Reconstruction through the posterior mean: [B, 3, T, H, W] -> [B, 3, T, H, W]."""
        return self.decode(self.encode(video))

    # ---- latent space -------------------------------------------------------------------------

    def normalize(self, z: Tensor) -> Tensor:
        """Raw VAE latents -> diffusion-model space: (mu - mean) / std per channel. z: [B, z, t, h, w]."""
        return (z - self.latent_mean.to(z)) / self.latent_std.to(z)

    def denormalize(self, z: Tensor) -> Tensor:
        """Diffusion-model space -> raw VAE latents: z * std + mean. z: [B, z, t, h, w]."""
        return z * self.latent_std.to(z) + self.latent_mean.to(z)

    # ---- input checks -------------------------------------------------------------------------

    def validate_video(self, video: Tensor, who: str) -> Tensor:
        """Check a pixel video for `encode`; returns it in the weights' dtype."""
        cfg = self.config
        f, s = cfg.temporal_factor, cfg.spatial_factor
        if not isinstance(video, Tensor) or video.ndim != 5:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"{who}: video must be a tensor [B, 3, T, H, W]; got {shape}")
        _, c, t, h, w = video.shape
        if c != RGB:
            raise ValueError(
                f"{who}: video has {c} channels in dim 1; expected 3 (RGB, layout [B, 3, T, H, W])"
            )
        if t < 1 or (t - 1) % f:
            hint = f"; e.g. keep the first {t - (t - 1) % f}" if t > 1 else ""
            raise ValueError(
                f"{who}: video has T={t} frames; frames must be 1 + {f}k (1, {1 + f}, {1 + 2 * f}, ...){hint}"
            )
        if h % s or w % s or h == 0 or w == 0:
            raise ValueError(f"{who}: video is {h}x{w} (HxW); height and width must be positive multiples of {s}")
        if not video.is_floating_point():
            raise ValueError(f"{who}: video dtype is {video.dtype}; expected a float tensor in [-1, 1]")
        peak = float(video.detach().abs().amax())
        if peak != peak or peak == float("inf"):
            raise ValueError(f"{who}: video contains NaN or inf values")
        if peak > 2.0:
            raise ValueError(f"{who}: video values reach |x| = {peak:g}; expected pixels in [-1, 1]")
        return video.to(self.dtype)

    def validate_latent(self, z: Tensor, who: str) -> Tensor:
        """Check raw latents for decoding; returns them in the weights' dtype."""
        zc = self.config.z_dim
        if not isinstance(z, Tensor) or z.ndim != 5:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"{who}: latents must be a tensor [B, {zc}, t, h, w]; got {shape}")
        _, c, t, h, w = z.shape
        if c != zc:
            raise ValueError(f"{who}: latents have {c} channels in dim 1; expected z_dim={zc}")
        if t < 1 or h < 1 or w < 1:
            raise ValueError(f"{who}: latents have shape {tuple(z.shape)}; t, h and w must be >= 1")
        if not z.is_floating_point():
            raise ValueError(f"{who}: latents dtype is {z.dtype}; expected a float tensor")
        if not bool(torch.isfinite(z).all()):
            raise ValueError(f"{who}: latents contain NaN or inf values")
        return z.to(self.dtype)

"""Geometry of the Wan 2.1 causal video VAE, and its named presets."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import fields_from_dict
from .latent_format import LatentFormat

# Per-channel statistics of the real Wan 2.1 latent space (raw mu), used for z = (mu - mean) / std.
WAN21_LATENT_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_LATENT_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
WAN21_LATENT_FORMAT = LatentFormat(WAN21_LATENT_MEAN, WAN21_LATENT_STD)


@dataclass(frozen=True)
class VAEConfig:
    """Wan 2.1 VAE hyper-parameters. Field names follow the official constructor
    (`temperal_downsample` spelled correctly here).

    Compression: space 2**(len(dim_mult)-1), time 2**sum(temporal_downsample).
    `latent_mean` / `latent_std` are empty for "identity" statistics (zeros / ones).
    `temporally_local`: False (Wan 2.1) lets every causal temporal conv see the previous chunk's frames, so each
    latent frame depends on the whole past; True zeroes those past taps at every group boundary, so latent frame
    k >= 1 is encoded from pixel frames 4k-3..4k only and decoded from latent frame k only (frame 0 from frame 0):
    same weights and shapes, no drift over long streams, and short clips train it for any length.
    `decoder_context` (temporally local only): latent frames before each one that the decoder's trunk (its
    latent-resolution part) also sees, each window computed from zeros before it. 0 decodes latent frame k
    from itself alone, so a group's 4 frames come from one snapshot; 1 lets the decoder read the motion
    between latent frames k-1 and k and spread it over the group, and the past still ends one frame back.
    """

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    latent_mean: tuple[float, ...] = WAN21_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN21_LATENT_STD
    temporally_local: bool = False
    decoder_context: int = 0

    def __post_init__(self) -> None:
        for name, kind in (("dim_mult", int), ("temporal_downsample", bool),
                           ("latent_mean", float), ("latent_std", float)):
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))
        if not self.latent_mean:
            object.__setattr__(self, "latent_mean", (0.0,) * self.z_dim)
        if not self.latent_std:
            object.__setattr__(self, "latent_std", (1.0,) * self.z_dim)
        if not isinstance(self.temporally_local, bool):
            raise ValueError(f"VAEConfig: temporally_local={self.temporally_local!r} must be true or false")
        if isinstance(self.decoder_context, bool) or not isinstance(self.decoder_context, int) \
                or self.decoder_context < 0:
            raise ValueError(f"VAEConfig: decoder_context={self.decoder_context!r} must be an integer >= 0")
        if self.decoder_context and not self.temporally_local:
            raise ValueError(f"VAEConfig: decoder_context={self.decoder_context} needs temporally_local=true (a Wan "
                             "2.1 decoder already sees the whole past)")

        if self.dim <= 0 or self.dim % 2:
            raise ValueError(f"VAEConfig: dim={self.dim} must be a positive even number")
        if self.z_dim <= 0:
            raise ValueError(f"VAEConfig: z_dim={self.z_dim} must be positive")
        if len(self.dim_mult) < 2 or min(self.dim_mult) <= 0:
            raise ValueError(f"VAEConfig: dim_mult={list(self.dim_mult)} needs >= 2 positive entries")
        if self.num_res_blocks < 1:
            raise ValueError(f"VAEConfig: num_res_blocks={self.num_res_blocks} must be >= 1")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(
                f"VAEConfig: temporal_downsample has {len(self.temporal_downsample)} entries; "
                f"expected len(dim_mult) - 1 = {len(self.dim_mult) - 1}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"VAEConfig: dropout={self.dropout} must be in [0, 1)")
        for name in ("latent_mean", "latent_std"):
            values = getattr(self, name)
            if len(values) != self.z_dim:
                raise ValueError(f"VAEConfig: {name} has {len(values)} entries; expected z_dim={self.z_dim}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"VAEConfig: {name} contains non-finite values")
        if min(self.latent_std) <= 0:
            raise ValueError("VAEConfig: latent_std entries must be > 0")

    @property
    def latent_format(self) -> LatentFormat:
        """How this VAE's raw latents map to the normalised space models are trained in."""
        return LatentFormat(self.latent_mean, self.latent_std)

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent cell along H and W (8 for Wan 2.1)."""
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        """Pixel frames per latent frame after the first (4 for Wan 2.1)."""
        return 2 ** sum(self.temporal_downsample)

    def latent_frames(self, frames: int) -> int:
        """T = 1 + f*k pixel frames -> k + 1 latent frames (no validation)."""
        return 1 + (frames - 1) // self.temporal_factor

    def pixel_frames(self, latent_frames: int) -> int:
        """k + 1 latent frames -> 1 + f*k pixel frames."""
        return 1 + self.temporal_factor * (latent_frames - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ("dim_mult", "temporal_downsample", "latent_mean", "latent_std"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        return cls(**fields_from_dict(cls, d))


VAE_PRESETS: dict[str, VAEConfig] = {
    # The released Wan 2.1 VAE (Wan2.1_VAE.pth / wan_2.1_vae.safetensors): 194 tensors, 126.9M params.
    "wan2.1-vae": VAEConfig(),
    # Tiny presets: same architecture and compression (8x space, 4x time). Their latent statistics are
    # identity until a trained checkpoint provides its own.
    "tiny": VAEConfig(dim=16, z_dim=16, num_res_blocks=1, latent_mean=(), latent_std=()),
    "micro": VAEConfig(dim=8, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1, latent_mean=(), latent_std=()),
}


def vae_preset(name: str) -> VAEConfig:
    try:
        return VAE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown VAE preset {name!r}; allowed: {sorted(VAE_PRESETS)}") from None

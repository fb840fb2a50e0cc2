"""The latent format: how a VAE's raw latents map to the normalised space a diffusion model works in.

z_model = (z_raw − mean) / std per channel. The format belongs to the VAE that made the training latents; a model
trained on them lives in that format, and decoding its latents with a VAE of another format is garbage, so the
two are compared before any compute. ComfyUI's LATENT is raw VAE space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatentFormat:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"latent format: mean has {len(self.mean)} and std {len(self.std)} entries; "
                             "expected one each per latent channel")
        if not all(math.isfinite(v) for v in self.mean + self.std) or min(self.std) <= 0:
            raise ValueError("latent format: mean/std must be finite and std > 0")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.ndim < 2 or z.shape[1] != self.channels:
            raise ValueError(f"latents {tuple(z.shape)} do not have this format's {self.channels} channels in dim 1")
        view = (1, self.channels) + (1,) * (z.ndim - 2)
        m = torch.tensor(self.mean, dtype=z.dtype, device=z.device).view(view)
        s = torch.tensor(self.std, dtype=z.dtype, device=z.device).view(view)
        return m, s

    def to_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Model space -> raw VAE latents: z·std + mean. z: [B, C, T, H, W]."""
        m, s = self._stats(z)
        return z * s + m

    def from_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw VAE latents -> model space: (z − mean) / std."""
        m, s = self._stats(z)
        return (z - m) / s

    def matches(self, other: "LatentFormat", rel: float = 1e-3) -> bool:
        if self.channels != other.channels:
            return False
        close = lambda a, b: abs(a - b) <= rel * max(1.0, abs(a), abs(b))  # noqa: E731
        return all(close(a, b) for a, b in zip(self.mean + self.std, other.mean + other.std))

    def describe(self) -> str:
        return (f"{self.channels} channels, mean [{', '.join(f'{v:.3g}' for v in self.mean[:3])}, ...], "
                f"std [{', '.join(f'{v:.3g}' for v in self.std[:3])}, ...]")

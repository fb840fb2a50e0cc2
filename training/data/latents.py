"""Latent datasets (build-latents) and teacher ODE-pair datasets (ode-pairs), on the shard format."""
from __future__ import annotations

from .shards import DatasetError, ShardDataset


class LatentDataset(ShardDataset):
    """Items: latents [C, T, H, W] (normalised VAE space), context [L, text_dim], prompt."""

    def __init__(self, folder: str):
        super().__init__(folder, kind="latents")
        for name, ndim in (("latents", 4), ("context", 2)):
            if len(self.fields.get(name, ())) != ndim:
                raise DatasetError(f"{folder}: field {name!r} must have {ndim} dims per sample, "
                                   f"index says {self.fields.get(name)}")

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W)"""
        return self.fields["latents"]

    @property
    def text_dim(self) -> int:
        return self.fields["context"][-1]


class ODEPairDataset(ShardDataset):
    """Items: noise, x0 [C, T, H, W], states [S, C, T, H, W] at meta["timesteps"], context, prompt."""

    def __init__(self, folder: str):
        super().__init__(folder, kind="ode_pairs")
        for name in ("noise", "states", "x0", "context"):
            if name not in self.fields:
                raise DatasetError(f"{folder}: ODE-pair dataset lacks field {name!r}")
        if len(self.meta.get("timesteps", ())) != self.fields["states"][0]:
            raise DatasetError(f"{folder}: meta timesteps {self.meta.get('timesteps')} do not match "
                               f"{self.fields['states'][0]} stored states")

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        return self.fields["x0"]

    @property
    def text_dim(self) -> int:
        return self.fields["context"][-1]

    @property
    def timesteps(self) -> list[float]:
        """Shifted model timesteps (0..1000) of the stored states, noisiest first."""
        return [float(t) for t in self.meta["timesteps"]]

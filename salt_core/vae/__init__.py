"""Wan 2.1 causal video VAE (official weight names), streaming decode and name conversion."""
from .config import VAE_PRESETS, WAN21_LATENT_FORMAT, WAN21_LATENT_MEAN, WAN21_LATENT_STD, VAEConfig, vae_preset
from .frames import FrameDecoder, check_formats, decode_to_frames
from .latent_format import LatentFormat
from .convert import (
    detect_vae_format,
    diffusers_to_official,
    official_to_diffusers,
    to_official,
    vae_config_from_state_dict,
)
from .layers import FeatureCache
from .model import WanVAE
from .streaming import StreamingDecoder, iter_decode

__all__ = [
    "FrameDecoder", "LatentFormat", "WAN21_LATENT_FORMAT", "check_formats", "decode_to_frames",
    "VAEConfig", "VAE_PRESETS", "vae_preset", "WAN21_LATENT_MEAN", "WAN21_LATENT_STD",
    "WanVAE", "StreamingDecoder", "iter_decode", "FeatureCache",
    "detect_vae_format", "official_to_diffusers", "diffusers_to_official", "to_official",
    "vae_config_from_state_dict",
]

"""Wan 2.1 causal video VAE (official weight names), streaming and tiled decode, and name conversion."""
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
from .budget import DecodeCall, DecodeMemory, estimate_decode_memory, min_tile, plan_tiles, receptive_radius_px
from .layers import FeatureCache
from .model import WanVAE
from .preview import PreviewDecoder, decode_preview
from .streaming import StreamingDecoder, iter_decode
from .tiled import DecodeTiling, TiledStreamingDecoder, decode_tiled, plan_clip_decode
from .tiling import TilePlan

__all__ = [
    "FrameDecoder", "LatentFormat", "WAN21_LATENT_FORMAT", "check_formats", "decode_to_frames",
    "VAEConfig", "VAE_PRESETS", "vae_preset", "WAN21_LATENT_MEAN", "WAN21_LATENT_STD",
    "WanVAE", "StreamingDecoder", "iter_decode", "FeatureCache",
    "detect_vae_format", "official_to_diffusers", "diffusers_to_official", "to_official",
    "vae_config_from_state_dict",
    "DecodeTiling", "TiledStreamingDecoder", "decode_tiled", "plan_clip_decode", "TilePlan", "plan_tiles",
    "estimate_decode_memory", "DecodeCall",
    "DecodeMemory", "min_tile", "receptive_radius_px", "decode_preview", "PreviewDecoder",
]

"""Training data: sharded latent / ODE-pair datasets on disk, prompt datasets with a text-embedding
source, a deterministic per-rank batch loader, and the `build-latents` pipeline."""
from .latents import LatentDataset, ODEPairDataset
from .loader import BatchLoader
from .prompts import PromptDataset, read_prompts
from .shards import ShardDataset, ShardWriter
from .text import build_text_encoder

__all__ = [
    "BatchLoader", "LatentDataset", "ODEPairDataset", "PromptDataset", "ShardDataset", "ShardWriter",
    "build_text_encoder", "read_prompts",
]

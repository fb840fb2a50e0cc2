"""Random latent datasets of the right shapes: a stand-in until the synthetic world, tiny VAE and text
encoder exist, used by tests and the example configs (`python -m training random-latents`)."""
from __future__ import annotations

import torch

from ..seeding import generator
from .shards import ShardWriter, write_index
from .text import HashTextEncoder, write_embeddings

WORDS = ("red", "green", "blue", "circle", "square", "triangle", "moves", "left", "right", "up", "down", "slowly")


def random_prompt(g: torch.Generator, words: int = 4) -> str:
    return " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (words,), generator=g))


def write_random_latents(folder: str, *, count: int, latent_shape=(16, 3, 4, 4), text_dim: int = 32,
                         max_tokens: int = 8, seed: int = 0, samples_per_shard: int = 4,
                         negative_prompt: str = "") -> str:
    """`count` samples: smooth-ish random latents [C, T, H, W], hash-encoded random prompts.

    Also writes `text_embeddings.safetensors` (all prompts + the negative prompt) for text.encoder 'file'."""
    g = generator(seed, "random-latents")
    enc = HashTextEncoder(text_dim, max_tokens)
    writer = ShardWriter(folder, samples_per_shard=samples_per_shard)
    prompts = []
    for _ in range(count):
        prompt = random_prompt(g)
        base = torch.randn(latent_shape[0], 1, *latent_shape[2:], generator=g)
        latents = base + 0.3 * torch.randn(latent_shape, generator=g)  # correlated over time
        writer.add({"latents": latents, "context": enc.encode([prompt])[0]}, prompt)
        prompts.append(prompt)
    writer.flush()
    write_index(folder, "latents", {"source": "random", "seed": seed})
    all_prompts = prompts + [negative_prompt]
    write_embeddings(f"{folder}/text_embeddings.safetensors", all_prompts, enc.encode(all_prompts))
    return folder

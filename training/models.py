"""Building the networks of a run: resolve each one's DiTConfig first (from presets and checkpoint
headers, reading no weights), check they fit together and fit the data, then build and load them."""
from __future__ import annotations

import copy
import json
import os
from typing import Optional

import torch
from torch import nn

from salt_core.checkpoints import detect_from_shapes, load_dit, open_checkpoint
from salt_core.config import DiTConfig, dit_preset
from salt_core.dit import WanDiT
from salt_core.schedules import FLOAT_TIMESTEPS, TimestepConvention

from .config import ModelConfig
from .config_load import ConfigError


def checkpoint_config(path: str) -> DiTConfig:
    """The DiTConfig of a checkpoint from its header / tensor shapes only."""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: checkpoint not found")
    with open_checkpoint(path) as reader:
        if "dit_config" in reader.metadata:  # our header
            return DiTConfig.from_dict(json.loads(reader.metadata["dit_config"]))
        return detect_from_shapes(reader.shapes(), trainer_entry=reader.trainer_entry, source=path).config


def resolve_config(role: str, m: ModelConfig, teacher: Optional[DiTConfig] = None) -> DiTConfig:
    """DiTConfig of network `role` from its preset / init, with a clear error when they disagree."""
    preset = None
    if m.preset:
        try:
            preset = dit_preset(m.preset)
        except ValueError as e:
            raise ConfigError(f"{role}.preset: {e}") from None
    if m.init == "teacher":
        if teacher is None:
            raise ConfigError(f"{role}.init is 'teacher' but this command has no teacher")
        found, source = teacher, "the teacher"
    elif m.init:
        found, source = checkpoint_config(m.init), m.init
    else:
        if preset is None:
            raise ConfigError(f"{role}: give {role}.preset (a fresh model) or {role}.init (weights to start from)")
        return preset
    if preset is not None and preset != found:
        raise ConfigError(f"{role}.preset {m.preset!r} disagrees with {source} ({_describe(found)}); "
                          f"leave {role}.preset empty to take the config from {role}.init")
    return found


def _describe(c: DiTConfig) -> str:
    return (f"dim={c.dim}, layers={c.num_layers}, heads={c.num_heads}, in_dim={c.in_dim}, out_dim={c.out_dim}, "
            f"text_dim={c.text_dim}, patch={list(c.patch_size)}")


def check_compatible(configs: dict[str, DiTConfig]) -> None:
    """Networks exchanging latents and prompts must agree on latent channels, text width and patch size."""
    items = list(configs.items())
    for field in ("in_dim", "out_dim", "text_dim", "patch_size"):
        values = {role: getattr(c, field) for role, c in items}
        if len(set(values.values())) > 1:
            raise ConfigError(
                f"incompatible networks: {field} differs ({', '.join(f'{r}={v}' for r, v in values.items())}); "
                "teacher, critic and student must share latent channels, text_dim and patch size. Configs:\n  "
                + "\n  ".join(f"{r}: {_describe(c)}" for r, c in items))
    for role, c in items:
        if c.in_dim != c.out_dim:
            raise ConfigError(f"{role}: in_dim={c.in_dim} != out_dim={c.out_dim}; "
                              "a flow model predicts in its input space")


def check_data_fits(config: DiTConfig, latent_shape, text_dim: Optional[int], chunk_frames: Optional[int],
                    source: str) -> None:
    """latent_shape: (C, T, H, W) of the data; chunk_frames: for causal networks."""
    C, T, H, W = latent_shape
    if C != config.in_dim:
        raise ConfigError(f"{source}: latents have {C} channels, the model expects in_dim={config.in_dim}")
    if text_dim is not None and text_dim != config.text_dim:
        raise ConfigError(f"{source}: text embeddings are {text_dim} wide, "
                          f"the model expects text_dim={config.text_dim}")
    pt, ph, pw = config.patch_size
    if T % pt or H % ph or W % pw:
        raise ConfigError(f"{source}: latent T x H x W = {T}x{H}x{W} is not divisible by the patch size "
                          f"{config.patch_size}")
    if chunk_frames is not None and T % chunk_frames:
        raise ConfigError(f"{source}: {T} latent frames are not a multiple of ar.chunk_frames={chunk_frames}")


def build(config: DiTConfig, m: ModelConfig, device, teacher: Optional[nn.Module] = None, *,
          convention: TimestepConvention = FLOAT_TIMESTEPS) -> WanDiT:
    """The network with its initial weights (fp32, trainable, gradient checkpointing per config), fed timesteps by
    `convention` (the run's grid.integer_timesteps)."""
    if m.init == "teacher":
        model = copy.deepcopy(teacher)
    elif m.init:
        model, _ = load_dit(m.init, device="cpu", dtype=torch.float32, config=config)
    else:
        model = WanDiT(config, attention_backend=m.attention_backend)
    model.set_attention_backend(m.attention_backend)
    model.gradient_checkpointing = m.gradient_checkpointing
    model.timestep_convention = convention
    model = model.to(device=device, dtype=torch.float32).train()
    model.requires_grad_(True)
    return model


def frozen(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    return model.eval()


def load_teacher(path: str, config: DiTConfig, device, *, gradient_checkpointing: bool = False) -> WanDiT:
    """The frozen teacher (fp32; autocast handles bf16 on CUDA). gradient_checkpointing recomputes its blocks in
    backward when a loss differentiates through it (TRD), instead of keeping their activations."""
    model, _ = load_dit(path, device=device, dtype=torch.float32, config=config)
    model.gradient_checkpointing = gradient_checkpointing
    return frozen(model)

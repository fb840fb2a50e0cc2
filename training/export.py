"""Trainer checkpoint -> the safetensors file the nodes and salt_core load (save_dit + SamplingDefaults)."""
from __future__ import annotations

import json
import os
from typing import Optional

import torch

from salt_core.checkpoints import save_dit
from salt_core.config import DiTConfig, SamplingDefaults
from salt_core.dit import WanDiT

from .checkpoint import TrainerCheckpointError
from .export_record import bundle_files, export_record, recorded_sources

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def network_from_state(state: dict, name: Optional[str] = None, weights: str = "ema") -> tuple[WanDiT, str]:
    """Rebuild a network of a trainer state (default: its primary) with EMA or trained weights.
    Returns (model, weights actually used)."""
    name = name or state["primary"]
    if name not in state["nets"]:
        raise TrainerCheckpointError(f"trainer checkpoint has no network {name!r}; it has {sorted(state['nets'])}")
    net = state["nets"][name]
    config = DiTConfig.from_dict(json.loads(net["dit_config"]))
    tensors = dict(net["model"])
    used = "trained"
    if weights == "ema":
        if net.get("ema"):
            tensors.update(net["ema"])
            used = "ema"
        else:
            print(f"note: network {name!r} has no EMA weights (ema.enabled was off); exporting the trained weights")
    with torch.device("meta"):
        model = WanDiT(config)
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True, assign=True)
    return model.eval(), used


def export_state(state: dict, output: str, *, weights: str = "ema", dtype: str = "float32", vae: str = "",
                 text_encoder: str = "", bundle: bool = False) -> str:
    """Write the primary network of a trainer state to `output` via salt_core's save_dit, with the record of the
    VAE / text encoder it was trained with (`vae` / `text_encoder` paths override what the run's config says);
    `bundle` copies those files next to the output."""
    if not state.get("sampling"):
        raise TrainerCheckpointError(f"a `{state['command']}` checkpoint has no network to export")
    sampling = SamplingDefaults.from_dict(json.loads(state["sampling"]))
    model, used = network_from_state(state, weights=weights)
    extra = {"salt_trainer_command": state["command"], "salt_trainer_step": str(state["step"]),
             "salt_trainer_weights": used, "salt_trainer_config_hash": state["config_hash"]}
    if sampling.causal:  # the cache policy the student was trained under (a hint for inference)
        extra["salt_trainer_cache_policy"] = json.loads(state["config_json"])["ar"]["cache"]
    record = export_record(state["config_json"], vae=vae, text_encoder=text_encoder)
    if record is not None:
        extra.update(record.to_metadata())
    elif bundle:
        raise TrainerCheckpointError("export.bundle: the run records no VAE or text encoder to bundle; give "
                                     "export.vae / export.text_encoder")
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    if bundle:
        bundle_files(record, recorded_sources(state["config_json"], vae=vae, text_encoder=text_encoder), folder)
    return save_dit(output, model, sampling, extra_metadata=extra, dtype=DTYPES[dtype])

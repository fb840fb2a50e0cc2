"""`export`: a trainer checkpoint's primary network (EMA weights by default) -> our .safetensors format
with its SamplingDefaults (causal, chunk, shift, grid, transition), loadable by salt_core and the nodes."""
from __future__ import annotations

import os

from ..checkpoint import SUBDIR, load_checkpoint, resolve_checkpoint
from ..config import TrainConfig
from ..export import export_state
from ..trainer import EXPORT_FILE


def run(cfg: TrainConfig, command: str = "export") -> dict:
    e = cfg.export
    path = resolve_checkpoint(e.checkpoint or cfg.run.output_dir)
    state = load_checkpoint(path)
    folder = os.path.dirname(os.path.abspath(path))
    run_dir = os.path.dirname(folder) if os.path.basename(folder) == SUBDIR else folder
    out = export_state(state, e.output or os.path.join(run_dir, EXPORT_FILE), weights=e.weights, dtype=e.dtype,
                       vae=e.vae, text_encoder=e.text_encoder, bundle=e.bundle)
    print(f"exported {state['primary']} of {path} (step {state['step']}, {e.weights} weights) to {out}")
    return {"output": out, "step": state["step"]}

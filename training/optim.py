"""AdamW per network, learning-rate warmup, gradient clipping and the EMA of trained weights."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .config import AdamWConfig, EMAConfig
from .distributed import full, is_dtensor, shard_like


def build_adamw(module: nn.Module, cfg: AdamWConfig) -> torch.optim.AdamW:
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_at(cfg: AdamWConfig, updates: int) -> float:
    """The learning rate of update number `updates` (0-based): linear warmup over `warmup_steps` updates, then
    constant, or a cosine from lr down to lr·final_lr_ratio over the next `cosine_updates` updates, then held."""
    if updates < cfg.warmup_steps:
        return cfg.lr * (updates + 1) / cfg.warmup_steps
    if cfg.cosine_updates <= 0:
        return cfg.lr
    done = min(1.0, (updates - cfg.warmup_steps) / cfg.cosine_updates)
    return cfg.lr * (cfg.final_lr_ratio + (1.0 - cfg.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * done)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(module: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm (0 = measure only); returns the norm before clipping (may be inf/nan).
    Handles FSDP modules whose gradients are part sharded (DTensors), part replicated."""
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return 0.0
    sharded = [p.grad for p in params if is_dtensor(p.grad)]
    if not sharded:
        if max_norm > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=False))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params]))
    plain = [p.grad for p in params if not is_dtensor(p.grad)]
    sq = torch.nn.utils.get_total_norm(sharded).full_tensor().float().square().cpu()
    if plain:
        sq = sq + torch.nn.utils.get_total_norm(plain).float().square().cpu()
    norm = float(sq.sqrt())
    if max_norm > 0 and math.isfinite(norm):
        coef = min(1.0, max_norm / (norm + 1e-6))
        for g in sharded + plain:
            g.mul_(coef)
    return norm


class EMA:
    """Shadow copies of a module's parameters: copies before `start_step`, then
    shadow <- decay*shadow + (1-decay)*param after every update.

    For FSDP-sharded parameters the shadow holds this rank's local shard (the EMA is elementwise);
    `state_dict` gathers full tensors (a collective: call it on every rank)."""

    def __init__(self, module: nn.Module, cfg: EMAConfig):
        self.decay, self.start_step = cfg.decay, cfg.start_step
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shadow = [_local(p).detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        current = [_local(p).detach() for p in self.params]
        if step < self.start_step:
            torch._foreach_copy_(self.shadow, current)
        else:
            torch._foreach_lerp_(self.shadow, current, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for n, p, t in zip(self.names, self.params, self.shadow):
            if is_dtensor(p):
                from torch.distributed.tensor import DTensor

                t = DTensor.from_local(t, p.device_mesh, p.placements, run_check=False, shape=p.shape,
                                       stride=p.stride())
            out[n] = full(t)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:3]}")
        with torch.no_grad():
            for n, p, t in zip(self.names, self.params, self.shadow):
                t.copy_(_local(shard_like(state[n], p)))

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for p, t in zip(self.params, self.shadow):
            _local(p).copy_(t)


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if is_dtensor(t) else t


def is_finite(x: Optional[float]) -> bool:
    return x is not None and math.isfinite(x)

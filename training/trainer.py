"""The training loop shared by every training command.

Per step: reseed from (seed, step, rank); take this rank's part of the global batch; for each phase the
task names (e.g. student every 5th step, critic every step): zero grads; for each of `optim.accumulation`
micro-batches, loss under autocast and backward of loss / N (gradients add up to those of the mean loss);
then average gradients over ranks once, clip, NaN/inf guard (skip + log), AdamW step, EMA. Then metrics,
probe, checkpoint. Everything a step draws depends only on (seed, step, rank), and checkpoints hold all state,
so N steps + save + resume + N steps equals 2N steps bit for bit on CPU.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from salt_core.atomic import atomic_write_text

from .checkpoint import (FORMAT, capture_rng, check_resumable, checkpoint_dir, checkpoint_path, latest_checkpoint,
                         load_checkpoint, prune, remove_stale_temps, resolve_checkpoint, restore_rng, save_checkpoint)
from .config import AdamWConfig, TrainConfig
from .config_load import ConfigError, config_to_dict, dump_yaml
from .data.loader import BatchLoader, to_device
from .distributed import DistContext, load_module_state, load_optimizer_state, module_state, optimizer_state
from .export import export_state
from .metrics import MetricsLogger
from .optim import EMA, build_adamw, clip_gradients, is_finite, lr_at, set_lr
from .seeding import seed_step
from .task import Task

EXPORT_FILE = "model.safetensors"


def check_accumulation(batch_size: int, accumulation: int, world_size: int) -> None:
    """Each rank's batch must split into `accumulation` equal micro-batches; checked before any compute."""
    if accumulation < 1 or batch_size % (world_size * accumulation):
        raise ConfigError(f"data.batch_size={batch_size} over {world_size} rank(s) is {batch_size / world_size:g} "
                          f"samples per rank, which optim.accumulation={accumulation} does not split evenly: "
                          f"make data.batch_size a multiple of ranks x optim.accumulation = "
                          f"{world_size * max(accumulation, 1)}")


MICRO_BATCH = "micro_batch"  # the index of a micro-batch within its step (absent: the whole batch)


def micro_batches(batch: dict, count: int) -> list[dict]:
    """Split a batch {name: tensor [b, ...] or per-sample list} into `count` equal parts along the samples
    (the batch itself when count is 1); each part carries its index as MICRO_BATCH, so tasks that key their
    random draws by (step, phase, rank) can give each micro-batch its own noise."""
    if count == 1:
        return [batch]
    sizes = {len(v) for v in batch.values() if isinstance(v, (torch.Tensor, list))}
    if len(sizes) != 1 or next(iter(sizes)) % count:
        raise ValueError(f"cannot split a batch with per-sample sizes {sorted(sizes)} into {count} equal parts")
    n = next(iter(sizes)) // count
    return [{**{k: v[i * n:(i + 1) * n] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()},
             MICRO_BATCH: i} for i in range(count)]


@dataclass
class Network:
    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: AdamWConfig
    ema: Optional[EMA]
    updates: int = 0


def autocast_for(device: torch.device, precision: str):
    if precision == "bf16" and device.type != "cuda":
        raise ConfigError("run.precision 'bf16' is CUDA-only (bf16 autocast); use 'auto' or 'fp32' on CPU")
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext


def find_resume(cfg: TrainConfig, command: str, config_hash: str) -> Optional[tuple[str, dict]]:
    """The checkpoint to resume from (checked against this config), or None. Call before building anything."""
    r = cfg.run.resume
    existing = latest_checkpoint(cfg.run.output_dir)
    if r == "never":
        if existing is not None:
            raise ConfigError(f"run.resume is 'never' but {existing} exists: pick a new run.output_dir (or delete "
                              "its checkpoints/) so the old run's checkpoints are neither mixed in nor pruned")
        return None
    path = existing if r == "auto" else resolve_checkpoint(r)
    if path is None:
        return None
    state = load_checkpoint(path)
    check_resumable(state, path, command, config_hash, config_to_dict(cfg))
    if state["step"] > cfg.run.steps:
        raise ConfigError(f"{path} is at step {state['step']}, beyond run.steps={cfg.run.steps}")
    return path, state


class TrainingAborted(RuntimeError):
    """The run stopped itself (e.g. too many non-finite updates in a row); the checkpoints written so far are intact."""


class Trainer:
    def __init__(self, cfg: TrainConfig, command: str, config_hash: str, task: Task, loader: BatchLoader,
                 ctx: DistContext, resume: Optional[tuple[str, dict]] = None):
        self.cfg, self.command, self.config_hash = cfg, command, config_hash
        self.task, self.loader, self.ctx = task, loader, ctx
        self.accumulation = cfg.optim.accumulation
        check_accumulation(loader.global_batch, self.accumulation, ctx.world_size)
        self.autocast = autocast_for(ctx.device, cfg.run.precision)
        self.nets: dict[str, Network] = {}
        for name, spec in task.networks().items():
            ctx.broadcast_module(spec.module)
            ema = EMA(spec.module, cfg.ema) if spec.ema and cfg.ema.enabled else None
            self.nets[name] = Network(name, spec.module, build_adamw(spec.module, spec.optim), spec.optim, ema)
        self.skipped, self.consecutive_skips = 0, 0
        self.start_step = 0
        self.resume = resume
        if resume is not None:
            self._restore(*resume)
        self.out = cfg.run.output_dir
        if ctx.is_main:
            os.makedirs(checkpoint_dir(self.out), exist_ok=True)
            for name in remove_stale_temps(checkpoint_dir(self.out)):
                print(f"removed an unfinished checkpoint write: {name}", file=sys.stderr)
            text = f"# {command} (config hash {config_hash})\n" + dump_yaml(cfg)
            atomic_write_text(os.path.join(self.out, "config.yaml"), text)
        self.logger = MetricsLogger(self.out, enabled=ctx.is_main, tensorboard=cfg.run.tensorboard,
                                    resume_step=self.start_step if resume else None)

    # ---- state ------------------------------------------------------------------------------------
    def state(self, step: int) -> dict:
        sampling = self.task.sampling_defaults(step)
        nets = {}
        for n in self.nets.values():
            nets[n.name] = {
                "dit_config": json.dumps(n.module.config.to_dict()),
                "model": module_state(n.module),
                "ema": n.ema.state_dict() if n.ema else None,
                "optimizer": optimizer_state(n.optimizer),
                "updates": n.updates,
            }
        return {
            "format": FORMAT, "command": self.command, "step": step,
            "config_json": json.dumps(config_to_dict(self.cfg)), "config_hash": self.config_hash,
            "primary": self.task.primary, "sampling": json.dumps(sampling.to_dict()) if sampling else "",
            "nets": nets, "rng": capture_rng(),
            "data": {"position": self.loader.position(step), "global_batch": self.loader.global_batch},
            "guard": {"skipped": self.skipped, "consecutive": self.consecutive_skips},
            "world_size": self.ctx.world_size,
        }

    def _restore(self, path: str, state: dict) -> None:
        missing = sorted(set(self.nets) - set(state["nets"]))
        if missing:
            raise ConfigError(f"{path}: checkpoint lacks network(s) {missing}")
        for name, n in self.nets.items():
            s = state["nets"][name]
            load_module_state(n.module, s["model"])
            load_optimizer_state(n.optimizer, s["optimizer"])
            n.updates = int(s["updates"])
            if n.ema is not None:
                if not s["ema"]:
                    raise ConfigError(f"{path}: network {name!r} was saved without EMA but ema.enabled is on")
                n.ema.load_state_dict(s["ema"])
        self.start_step = int(state["step"])
        if state["data"]["position"] != self.loader.position(self.start_step):
            raise ConfigError(f"{path}: data position {state['data']['position']} does not match step "
                              f"{self.start_step} x batch {self.loader.global_batch}")
        self.skipped = int(state["guard"]["skipped"])
        self.consecutive_skips = int(state["guard"]["consecutive"])
        restore_rng(state["rng"])
        if self.ctx.is_main:
            print(f"resumed from {path} at step {self.start_step}", file=sys.stderr)

    def save(self, step: int) -> Optional[str]:
        state = self.state(step)
        path = None
        if self.ctx.is_main:
            path = save_checkpoint(checkpoint_path(self.out, step), state)
            prune(checkpoint_dir(self.out), self.cfg.run.keep_last)
        self.ctx.barrier()
        return path

    # ---- one update -------------------------------------------------------------------------------
    def _update(self, phase: str, batch: dict, step: int) -> dict:
        net = self.nets[phase]
        for n in self.nets.values():
            n.optimizer.zero_grad(set_to_none=True)
        parts = micro_batches(batch, self.accumulation)
        value, stats = 0.0, {}
        for part in parts:  # gradients add up (FSDP reduce-scatters each part; the rank average runs once below)
            with self.autocast():
                loss, part_stats = self.task.loss(phase, part, step)
            if loss.requires_grad:
                (loss / len(parts)).backward()
            value += float(loss.detach()) / len(parts)
            for k, v in part_stats.items():
                stats[k] = stats.get(k, 0.0) + float(v) / len(parts)
        self.ctx.sync_grads(net.module.parameters())
        norm = clip_gradients(net.module, net.cfg.grad_clip)
        lr = lr_at(net.cfg, net.updates)
        if self.ctx.all_true(is_finite(value) and is_finite(norm)):
            set_lr(net.optimizer, lr)
            net.optimizer.step()
            net.updates += 1
            if net.ema is not None:
                net.ema.update(net.module, step)
            self.consecutive_skips = 0
        else:
            self._skip(phase, step, value, norm)
        for n in self.nets.values():
            n.optimizer.zero_grad(set_to_none=True)
        out = {f"{phase}/loss": value, f"{phase}/grad_norm": norm, f"{phase}/lr": lr}
        out.update({f"{phase}/{k}": v for k, v in stats.items()})
        return out

    def _skip(self, phase: str, step: int, loss: float, norm: float) -> None:
        self.skipped += 1
        self.consecutive_skips += 1
        self.logger.event(step + 1, "skipped_update", network=phase, loss=loss, grad_norm=norm)
        if self.ctx.is_main:
            print(f"warning: step {step + 1}: non-finite {phase} loss/gradient (loss={loss}, grad_norm={norm}); "
                  "update skipped", file=sys.stderr)
        limit = self.cfg.run.max_consecutive_skips
        if self.consecutive_skips >= limit:
            raise TrainingAborted(f"{self.consecutive_skips} consecutive updates were skipped for non-finite values "
                               f"(run.max_consecutive_skips={limit}); lower the learning rate or check the data")

    # ---- the loop ---------------------------------------------------------------------------------
    def fit(self) -> dict:
        run = self.cfg.run
        total, start = run.steps, self.start_step
        bar = None
        if self.ctx.is_main and run.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=start, desc=self.command, dynamic_ncols=True)
        last_row: dict = {}
        latest: dict = {}  # each phase's last stats since the previous log row (a phase run every k steps is logged too)
        for step in range(start, total):
            t0 = time.perf_counter()
            seed_step(run.seed, step, self.ctx.rank)
            batch = to_device(self.loader.batch(step), self.ctx.device)
            for phase in self.task.phases(step):
                latest.update(self._update(phase, batch, step))
            row: dict = dict(latest)
            done = step + 1
            if run.probe_every and done % run.probe_every == 0:
                with self.autocast():
                    row.update({f"probe/{k}": v for k, v in self.task.probe(done).items()})
            if done % run.log_every == 0 or done == total:
                row = self.ctx.reduce_stats(row)
                row["skipped_total"] = self.skipped
                row["time/step_s"] = time.perf_counter() - t0
                self.logger.log(done, row)
                last_row, latest = row, {}
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k.endswith("/loss")})
            if done % run.save_every == 0 or done == total:
                self.save(done)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        exported = None
        if run.export_on_finish and self.task.sampling_defaults(total) is not None:
            exported = self.export(os.path.join(self.out, EXPORT_FILE))
        self.logger.close()
        return {"steps": total, "metrics": last_row, "exported": exported}

    def export(self, path: str) -> Optional[str]:
        state = self.state(self.cfg.run.steps)
        out = None
        if self.ctx.is_main:
            out = export_state(state, path, weights="ema")
            print(f"exported {self.task.primary} to {out}", file=sys.stderr)
        self.ctx.barrier()
        return out

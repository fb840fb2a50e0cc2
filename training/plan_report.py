"""The memory plan as text: every item per GPU, the verdict, and what to change when it does not fit."""
from __future__ import annotations

import dataclasses

from .config import TrainConfig
from .config_load import ConfigError
from .plan import GB, USABLE, MemoryPlan, plan_memory


def advice(cfg: TrainConfig, command: str, plan: MemoryPlan) -> list[str]:
    """Changes that make a plan fit (each alone), cheapest first."""
    o = plan.options
    tries = []
    if not (o.checkpointing or (o.checkpointing is None and cfg.student.gradient_checkpointing
                                and cfg.critic.gradient_checkpointing)):
        tries.append(("gradient checkpointing on (student / critic / teacher.gradient_checkpointing: true)",
                      dataclasses.replace(o, checkpointing=True), cfg))
    if plan.micro_batch > 1:
        acc = cfg.data.batch_size // o.gpus
        tries.append((f"optim.accumulation: {acc} (micro-batch 1)", dataclasses.replace(o, accumulation=acc), cfg))
    if not o.offload_teacher and o.gpus > 1 and cfg.distributed.strategy == "fsdp":
        tries.append(("distributed.offload_teacher: true (its FSDP shards in CPU memory)",
                      dataclasses.replace(o, offload_teacher=True), cfg))
    if cfg.distributed.strategy != "fsdp" and o.gpus > 1:
        fsdp = dataclasses.replace(cfg, distributed=dataclasses.replace(cfg.distributed, strategy="fsdp"))
        tries.append(("distributed.strategy: fsdp", o, fsdp))
    out = []
    for label, opts, c in tries:
        try:
            p = plan_memory(c, command, opts)
        except ConfigError:
            continue
        out.append(f"{label}: peak {p.peak / GB:.1f} GB ({'fits' if p.fits else 'still too much'})")
    for gpus in (2, 4, 8, 16, 32, 64):
        if gpus <= o.gpus or cfg.data.batch_size % gpus:
            continue
        c = dataclasses.replace(cfg, distributed=dataclasses.replace(cfg.distributed, strategy="fsdp"))
        try:
            p = plan_memory(c, command, dataclasses.replace(o, gpus=gpus, accumulation=1))
        except ConfigError:
            continue
        if p.fits:
            out.append(f"{gpus} GPUs with FSDP: peak {p.peak / GB:.1f} GB per GPU (fits)")
            break
    return out


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _row(label: str, value: float) -> str:
    return f"  {label:<58} {value / GB:9.2f} GB"


def format_plan(cfg: TrainConfig, plan: MemoryPlan) -> str:
    o = plan.options
    precision = "bf16 autocast, fp32 weights" if plan.bf16 else "fp32"
    lines = [f"plan: {plan.command} on {o.gpus} GPU(s) x {o.gpu_memory / GB:.1f} GB, "
             f"{'FSDP over ' + str(plan.shard) if plan.shard > 1 else 'no sharding'}, {precision}, "
             f"micro-batch {plan.micro_batch} per GPU (data.batch_size {cfg.data.batch_size} / {o.gpus} GPU(s) / "
             f"accumulation {o.accumulation})",
             "networks: " + "; ".join(f"{n.role} {_count(n.params)} params ({n.config.num_layers} blocks, "
                                      f"dim {n.config.dim}; {n.source})" for n in plan.nets.values())]
    static = sum(plan.static.values())
    lines.append(f"static per GPU: {static / GB:.2f} GB")
    lines += [_row(k, v) for k, v in plan.static.items()]
    for p in plan.phases:
        lines.append(f"phase {p.name}: peak {p.peak(static) / GB:.2f} GB")
        lines += [_row(k, v) for k, v in p.items.items() if v]
        lines += [_row("activations: " + k, v) for k, v in p.activations.items()]
        lines.append(_row("gradients + AdamW step temporaries", p.gradients))
        worst = max(p.transient.items(), key=lambda kv: kv[1], default=("none", 0.0))
        lines.append(_row("largest transient: " + worst[0], worst[1]))
    verdict = "fits" if plan.fits else "does NOT fit"
    lines.append(f"peak {plan.peak / GB:.2f} GB of {USABLE:.0%} x {o.gpu_memory / GB:.1f} GB usable -> {verdict}")
    lines += [f"note: {n}" for n in plan.notes]
    if not plan.fits:
        lines += [f"to fit: {a}" for a in advice(cfg, plan.command, plan)]
    return "\n".join(lines)

"""`python -m training plan`: the per-GPU memory of a distillation run (dmd, sc-dmd, salt-ar), before
anything is loaded.

Teacher, critic and student are built on the meta device from the config (checkpoint headers when the
files exist, presets otherwise: no weights are read), so parameter counts are exact; KV caches are sized
by salt_core's own KVCache on the meta device; activations come from `plan_activations`. What our trainer
keeps, per GPU (FSDP shards the transformer blocks over the GPUs, embeddings and head stay replicated):

* weights fp32 for every network (the trained ones are their own fp32 master copy: there is no second,
  low-precision copy to keep; the frozen teacher is fp32 too), optionally the teacher offloaded to the CPU;
* AdamW: 2 fp32 states per trained weight (exp_avg, exp_avg_sq); EMA: one fp32 shadow of the student;
* per update phase: the gradients of the network being trained, the activations autograd saves for its
  graph-carrying forwards, the KV caches of causal rollouts, bf16 weight copies made by autocast, and the
  largest transient (a no-grad forward's working set, a block's backward, FSDP's gather of two blocks, the
  AdamW step's temporaries).
The peak of a phase is static + caches + weight copies + max(activations + transient, gradients + step
temporaries): activations are freed block by block while backward allocates the gradients.
A plan fits when the peak stays under 90% of the GPU (the rest: CUDA context and allocator slack).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import torch

from salt_core.config import DiTConfig, dit_preset
from salt_core.dit import WanDiT

from .config import ModelConfig, TrainConfig
from .config_load import ConfigError
from .losses.gram_alignment import check_feature_block
from .models import check_compatible, resolve_config
from .plan_activations import FP32, Shape, forward_bytes, working_bytes
from .trainer import check_accumulation

COMMANDS = ("dmd", "sc-dmd", "salt-ar")
USABLE = 0.9  # of the GPU memory; the rest is the CUDA context and allocator slack
LARGEST_GPU = 288e9  # bytes on the largest accelerators sold (B300, MI355X)
GB = 1e9


def parse_memory(text: str) -> float:
    """'80GB' / '80 GiB' / '141G' / '24e9' -> bytes; a clear error for anything else or beyond any GPU."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(GiB|GB|G|MiB|MB|TB|TiB)?\s*", text, re.IGNORECASE)
    if not m:
        raise ConfigError(f"--gpu-memory {text!r}: expected a size such as 80GB, 80GiB or 141G")
    unit = (m.group(2) or "B").lower()
    scale = {"b": 1, "gb": 1e9, "g": 1e9, "gib": 2 ** 30, "mb": 1e6, "mib": 2 ** 20, "tb": 1e12, "tib": 2 ** 40}[unit]
    value = float(m.group(1)) * scale
    if value > LARGEST_GPU:
        raise ConfigError(f"--gpu-memory {text!r} is {value / GB:.0f} GB; no GPU has more than "
                          f"{LARGEST_GPU / GB:.0f} GB: plan for more GPUs instead (--gpus)")
    if value < 1e8:
        raise ConfigError(f"--gpu-memory {text!r} is below 0.1 GB; give the memory of one GPU, e.g. 80GB")
    return value


@dataclass(frozen=True)
class Options:
    gpus: int = 1
    gpu_memory: float = 80e9
    device: str = "cuda"  # "cuda": bf16 autocast when run.precision allows; "cpu": fp32 everywhere
    offload_teacher: bool = False
    checkpointing: Optional[bool] = None  # None = student/critic gradient_checkpointing from the config
    accumulation: Optional[int] = None  # None = optim.accumulation


@dataclass
class Net:
    role: str
    config: DiTConfig
    params: int
    block_params: int  # all blocks together
    trained: bool
    source: str


@dataclass
class Phase:
    name: str
    items: dict[str, float] = field(default_factory=dict)  # persistent during the phase
    activations: dict[str, float] = field(default_factory=dict)
    transient: dict[str, float] = field(default_factory=dict)  # the largest one counts
    gradients: float = 0.0

    def peak(self, static: float) -> float:
        t = max(self.transient.values(), default=0.0)
        return static + sum(self.items.values()) + max(sum(self.activations.values()) + t, self.gradients)


@dataclass
class MemoryPlan:
    command: str
    options: Options
    nets: dict[str, Net]
    micro_batch: int
    shard: int
    bf16: bool
    static: dict[str, float]
    phases: list[Phase]
    notes: list[str]

    @property
    def peak(self) -> float:
        return max(p.peak(sum(self.static.values())) for p in self.phases)

    @property
    def fits(self) -> bool:
        return self.peak <= USABLE * self.options.gpu_memory


# ---- networks ------------------------------------------------------------------------------------

def _geometry(role: str, m: ModelConfig, teacher: Optional[DiTConfig]) -> tuple[DiTConfig, str]:
    """A network's DiTConfig from its checkpoint header, or from its preset when the file is absent."""
    if m.init and m.init != "teacher" and not os.path.exists(m.init):
        if not m.preset:
            raise ConfigError(f"{role}.init {m.init!r} does not exist: give {role}.preset (e.g. "
                              f"'wan2.1-t2v-1.3b') to plan without the file")
        try:
            return dit_preset(m.preset), f"preset {m.preset} ({m.init} not present)"
        except ValueError as e:
            raise ConfigError(f"{role}.preset: {e}") from None
    if role == "teacher" and not m.init and not m.preset:
        raise ConfigError("teacher.init (or teacher.preset) must say which teacher the run distils")
    source = "the teacher" if m.init == "teacher" else (m.init or f"preset {m.preset}")
    return resolve_config(role, m, teacher), source


@functools.lru_cache(maxsize=8)
def meta_model(config: DiTConfig) -> WanDiT:
    """A WanDiT on the meta device: shapes without storage (built once per geometry)."""
    with torch.device("meta"):
        return WanDiT(config)


def count_params(config: DiTConfig) -> tuple[int, int]:
    """(all parameters, parameters of all blocks) of a WanDiT built on the meta device."""
    model = meta_model(config)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.blocks.parameters())


def build_nets(cfg: TrainConfig) -> dict[str, Net]:
    tconfig, tsource = _geometry("teacher", cfg.teacher, None)
    nets = {"teacher": (tconfig, tsource, False)}
    for role in ("student", "critic"):
        c, source = _geometry(role, getattr(cfg, role), tconfig)
        nets[role] = (c, source, True)
    check_compatible({r: v[0] for r, v in nets.items()})
    out = {}
    for role, (c, source, trained) in nets.items():
        total, blocks = count_params(c)
        out[role] = Net(role, c, total, blocks, trained, source)
    return out


# ---- shapes of the run ---------------------------------------------------------------------------

def _tokens(c: DiTConfig, latent: tuple[int, int, int]) -> tuple[int, int, int]:
    """(frames, tokens per frame, latent H x W) of a latent [T, H, W]."""
    T, H, W = latent
    pt, ph, pw = c.patch_size
    if T % pt or H % ph or W % pw:
        raise ConfigError(f"data.latent_shape {list(latent)} is not divisible by the patch size {list(c.patch_size)}")
    return T // pt, (H // ph) * (W // pw), H * W


def kv_cache_bytes(c: DiTConfig, cfg: TrainConfig, batch: int, latent: tuple[int, int, int]) -> float:
    """A causal rollout's KV cache after every chunk is committed (salt_core.KVCache on meta), plus the
    prompt's cross-attention K/V, in the model's dtype (fp32 in our trainer)."""
    chunk = cfg.ar.chunk_frames
    cache = meta_model(c).new_cache(cfg.ar.cache, batch=batch, latent_hw=latent[1:], chunk_frames=chunk)
    for _ in range(0, latent[0], chunk):  # what plan() + finish() do to the buffers, without the RoPE tables
        cache._ensure_slots(cache.valid_frames + chunk)
        cache.committed += chunk
    return cache.memory_bytes() + FP32 * 2 * c.num_layers * batch * c.text_len * c.dim


def _kept(policy, frames_before: int) -> int:
    return frames_before if policy.kind == "full" else min(frames_before, policy.capacity)


# ---- the estimate --------------------------------------------------------------------------------

def plan_memory(cfg: TrainConfig, command: str, options: Options) -> MemoryPlan:
    if command not in COMMANDS:
        raise ConfigError(f"plan covers the distillation commands {list(COMMANDS)}, got {command!r}")
    if options.gpus < 1:
        raise ConfigError(f"--gpus must be >= 1, got {options.gpus}")
    if options.device not in ("cuda", "cpu"):
        raise ConfigError(f"--device must be 'cuda' or 'cpu', got {options.device!r}")
    if len(cfg.data.latent_shape) != 3:
        raise ConfigError("data.latent_shape must be [T, H, W] (latent frames, height, width) to plan a run")
    accumulation = options.accumulation or cfg.optim.accumulation
    check_accumulation(cfg.data.batch_size, accumulation, options.gpus)
    nets = build_nets(cfg)
    if cfg.trd.weight > 0:
        try:
            check_feature_block(cfg.trd.block, nets["teacher"].config.num_layers)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    bad = [i for i in cfg.ar.fa_layers if not 0 <= i < nets["student"].config.num_layers]
    if command == "salt-ar" and cfg.ar.fa_weight > 0 and bad:
        raise ConfigError(f"ar.fa_layers {bad} outside the student's blocks 0..{nets['student'].config.num_layers - 1}")
    b = cfg.data.batch_size // options.gpus // accumulation
    shard = options.gpus if cfg.distributed.strategy == "fsdp" and options.gpus > 1 else 1
    bf16 = options.device == "cuda" and cfg.run.precision in ("auto", "bf16")
    notes: list[str] = []

    def sharded(net: Net, bytes_per_param: int) -> float:
        return bytes_per_param * (net.block_params / shard + (net.params - net.block_params))

    t, s, k = nets["teacher"], nets["student"], nets["critic"]
    static = {"weights teacher (fp32, frozen)": 0.0 if options.offload_teacher else sharded(t, FP32),
              "weights student (fp32 = master)": sharded(s, FP32), "weights critic (fp32 = master)": sharded(k, FP32),
              "AdamW student (2 fp32 states)": sharded(s, 2 * FP32), "AdamW critic (2 fp32 states)": sharded(k, 2 * FP32)}
    if cfg.ema.enabled:
        static["EMA student (fp32 shadow)"] = sharded(s, FP32)
    if options.offload_teacher:
        notes.append("teacher weights on the CPU, two blocks at a time on the GPU (FSDP2 CPUOffloadPolicy; not yet "
                     "wired into our trainer, which also skips FSDP in a single process): each teacher forward "
                     "streams the teacher over PCIe")
    ckpt = {r: (options.checkpointing if options.checkpointing is not None else getattr(cfg, r).gradient_checkpointing)
            for r in ("student", "critic")}
    ckpt["teacher"] = options.checkpointing if options.checkpointing is not None else cfg.teacher.gradient_checkpointing

    frames, tpf, _ = _tokens(s.config, tuple(cfg.data.latent_shape))
    clip = Shape(frames * tpf, frames * tpf, b, fused=b == 1)
    prompt = s.config.text_len

    def graph(net: Net, shape: Shape, layers: int = 0) -> float:
        return forward_bytes(net.config, shape, bf16=bf16, checkpointing=ckpt[net.role], prompt_tokens=prompt,
                             layers=layers)

    def recompute(net: Net, shape: Shape) -> float:  # one block rebuilt in backward under checkpointing
        return forward_bytes(net.config, shape, bf16=bf16, checkpointing=False, prompt_tokens=prompt, layers=1) \
            if ckpt[net.role] else 0.0

    def gather(net: Net) -> float:  # FSDP all-gathers (or an offloaded teacher uploads) the current and next block
        two_blocks = 2 * FP32 * net.block_params / net.config.num_layers
        if net.role == "teacher" and options.offload_teacher:
            return two_blocks
        return two_blocks * (1 - 1 / shard) if shard > 1 else 0.0

    def copies(net: Net) -> float:  # autocast's bf16 cast of every weight of a trainable network
        return 2.0 * net.params if bf16 else 0.0

    causal = command == "salt-ar"
    phases = []
    # ---- student phase
    sp = Phase("student")
    sp.gradients = sharded(s, FP32) + sharded(s, FP32)  # the gradients + the AdamW step's temporaries
    if causal:
        chunk = cfg.ar.chunk_frames
        if frames % chunk:
            raise ConfigError(f"data.latent_shape has {frames} latent frames, not a multiple of ar.chunk_frames={chunk}")
        n = frames // chunk
        shapes = [Shape(chunk * tpf, (_kept(cfg.ar.cache, c * chunk) + chunk) * tpf, b, fused=b == 1) for c in range(n)]
        sp.activations["student chunk exit forwards"] = sum(graph(s, sh) for sh in shapes)
        sp.items["KV cache of the rollout"] = kv_cache_bytes(s.config, cfg, b, tuple(cfg.data.latent_shape))
        current = shapes[-1]
        if cfg.ar.fa_weight > 0 and n >= 2:
            sp.activations["feature alignment (current chunk, C_low)"] = graph(s, current)
            sp.items["KV caches C_low + C_high"] = 2 * sp.items["KV cache of the rollout"]
    else:
        current = clip
        sp.activations["student exit forward"] = graph(s, clip)
    sc_on = command != "dmd" and cfg.sc.weight > 0
    if sc_on and cfg.sc.form == "semigroup":
        sp.activations["SC direct path (second student forward)"] = graph(s, current)
    sp.items["autocast bf16 copies of the student"] = copies(s)
    sp.transient["no-grad forward (rollout, DMD teacher / critic)"] = max(
        working_bytes(t.config, clip, bf16), working_bytes(k.config, clip, bf16), working_bytes(s.config, current, bf16))
    sp.transient["block recompute + backward"] = recompute(s, current) + working_bytes(s.config, current, bf16)
    sp.transient["FSDP gather (2 blocks)"] = max(gather(t), gather(s))
    if cfg.trd.weight > 0:
        sp.activations["TRD: frozen teacher forward with input gradient"] = graph(t, clip)
        if bf16 and not ckpt["teacher"]:
            sp.items["TRD: bf16 weight copies the teacher's linears save"] = 2.0 * t.block_params
        sp.transient["block recompute + backward"] = max(sp.transient["block recompute + backward"],
                                                         recompute(t, clip) + working_bytes(t.config, clip, bf16))
        if causal:
            sp.items["TRD: reference rollout KV cache"] = sp.items["KV cache of the rollout"]
        notes.append("TRD (trd.weight > 0) is planned as the released code runs it; our commands do not run it yet")
    phases.append(sp)
    # ---- critic phase
    cp = Phase("critic")
    cp.gradients = sharded(k, FP32) + sharded(k, FP32)
    cp.activations["critic forward"] = graph(k, clip)
    cp.items["autocast bf16 copies of the critic"] = copies(k)
    if causal:
        cp.items["KV cache of the no-grad rollout"] = sp.items["KV cache of the rollout"]
    cp.transient["no-grad forward (rollout)"] = working_bytes(s.config, current, bf16)
    cp.transient["block recompute + backward"] = recompute(k, clip) + working_bytes(k.config, clip, bf16)
    cp.transient["FSDP gather (2 blocks)"] = max(gather(k), gather(s))
    phases.append(cp)
    if shard == 1 and options.gpus > 1:
        notes.append(f"distributed.strategy is {cfg.distributed.strategy!r}: every GPU holds full copies")
    return MemoryPlan(command, dataclasses.replace(options, accumulation=accumulation), nets, b, shard, bf16,
                      static, phases, notes)


# ---- advice and report ---------------------------------------------------------------------------

def advice(cfg: TrainConfig, command: str, plan: MemoryPlan) -> list[str]:
    """Changes that make a plan fit (each alone), cheapest first."""
    o = plan.options
    tries = []
    if not (o.checkpointing or (o.checkpointing is None and cfg.student.gradient_checkpointing
                                and cfg.critic.gradient_checkpointing)):
        tries.append(("gradient checkpointing on (student.gradient_checkpointing and critic.gradient_checkpointing: "
                      "true)", dataclasses.replace(o, checkpointing=True), cfg))
    if plan.micro_batch > 1:
        acc = cfg.data.batch_size // o.gpus
        tries.append((f"optim.accumulation: {acc} (micro-batch 1)", dataclasses.replace(o, accumulation=acc), cfg))
    if not o.offload_teacher:
        tries.append(("the frozen teacher offloaded to the CPU", dataclasses.replace(o, offload_teacher=True), cfg))
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
    kv = sum(v for k, v in plan.phases[0].items.items() if "KV cache" in k)
    if kv:
        out.append(f"code change, not an option yet: KV caches in bf16 instead of the model's fp32 (as Self Forcing "
                   f"keeps them) would save {kv / 2 / GB:.1f} GB in the student phase")
    trd = plan.phases[0].activations.get("TRD: frozen teacher forward with input gradient", 0.0)
    if trd:
        layers = plan.nets["teacher"].config.num_layers
        cut = trd * (1 - (cfg.trd.block + 1) / layers)
        out.append(f"code change, not an option yet: stopping the TRD teacher forward after block {cfg.trd.block} "
                   f"would save {cut / GB:.1f} GB")
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

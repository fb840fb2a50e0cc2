"""`python -m training plan`: the per-GPU memory of a distillation run (dmd, sc-dmd, salt-ar), before
anything is loaded.

Teacher, critic and student are built on the meta device from the config (checkpoint headers when the
files exist, presets otherwise: no weights are read), so parameter counts are exact; KV caches are sized
by salt_core's own KVCache on the meta device; activations come from `plan_activations`. What our trainer
keeps, per GPU (FSDP shards the transformer blocks over the GPUs, embeddings and head stay replicated):

* with `second_score`, its frozen teacher and its critic (phase critic2) as the teacher's and the critic's;
  a causal score (an AR teacher and its critic) runs the clean clip and its noised copy in one pass (2T frames);
* weights fp32 for the trained networks (their own fp32 master copy: there is no second, low-precision copy to
  keep); the frozen teacher in bf16 under bf16 autocast (fp32 otherwise), optionally offloaded to the CPU;
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


SECOND = "second_score."  # the role prefix of the second real score's teacher and critic


def build_nets(cfg: TrainConfig) -> dict[str, Net]:
    """teacher, student, critic, and with `second_score` on its teacher and critic (roles second_score.*)."""
    tconfig, tsource = _geometry("teacher", cfg.teacher, None)
    nets = {"teacher": (tconfig, tsource, False)}
    for role in ("student", "critic"):
        c, source = _geometry(role, getattr(cfg, role), tconfig)
        nets[role] = (c, source, True)
    s2 = cfg.second_score
    if s2.weight > 0:
        if not s2.teacher.init and not s2.teacher.preset:
            raise ConfigError("second_score.weight > 0 but second_score.teacher.init (or .preset) is empty")
        t2config, t2source = _geometry(SECOND + "teacher", s2.teacher, None)
        nets[SECOND + "teacher"] = (t2config, t2source, False)
        c2config, c2source = _geometry(SECOND + "critic", s2.critic, t2config)
        nets[SECOND + "critic"] = (c2config, "the second teacher" if s2.critic.init == "teacher" else c2source, True)
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


def kv_cache_bytes(c: DiTConfig, cfg: TrainConfig, batch: int, latent: tuple[int, int, int],
                   bf16: bool = False) -> float:
    """A causal rollout's KV cache after every chunk is committed (salt_core.KVCache on meta), plus the
    prompt's cross-attention K/V: bf16 under bf16 autocast (the trainer sets the student's cache_dtype), else
    the model's fp32."""
    chunk = cfg.ar.chunk_frames
    model = meta_model(c)
    model.cache_dtype = torch.bfloat16 if bf16 else None
    cache = model.new_cache(cfg.ar.cache, batch=batch, latent_hw=latent[1:], chunk_frames=chunk)
    for _ in range(0, latent[0], chunk):  # what plan() + finish() do to the buffers, without the RoPE tables
        cache._ensure_slots(cache.valid_frames + chunk)
        cache.committed += chunk
    return cache.memory_bytes() + (2 if bf16 else FP32) * 2 * c.num_layers * batch * c.text_len * c.dim


# ---- the estimate --------------------------------------------------------------------------------

def _check(cfg: TrainConfig, command: str, nets: dict[str, Net]) -> None:
    """Limits known before planning: shapes, depths and batch splits."""
    if len(cfg.data.latent_shape) != 3:
        raise ConfigError("data.latent_shape must be [T, H, W] (latent frames, height, width) to plan a run")
    if cfg.trd.weight > 0:
        try:
            check_feature_block(cfg.trd.block, nets["teacher"].config.num_layers)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    depth = nets["student"].config.num_layers
    bad = [i for i in cfg.ar.fa_layers if not 0 <= i < depth]
    if command == "salt-ar" and cfg.ar.fa_weight > 0 and bad:
        raise ConfigError(f"ar.fa_layers {bad} outside the student's blocks 0..{depth - 1}")
    frames = cfg.data.latent_shape[0] // nets["student"].config.patch_size[0]
    if command == "salt-ar" and frames % cfg.ar.chunk_frames:
        raise ConfigError(f"data.latent_shape has {frames} latent frames, not a multiple of "
                          f"ar.chunk_frames={cfg.ar.chunk_frames}")


class _Estimate:
    """The per-GPU byte counts of one run; each method is one kind of item."""

    def __init__(self, cfg: TrainConfig, options: Options, nets: dict[str, Net], micro_batch: int):
        self.cfg, self.o, self.nets, self.b = cfg, options, nets, micro_batch
        self.shard = options.gpus if cfg.distributed.strategy == "fsdp" and options.gpus > 1 else 1
        self.bf16 = options.device == "cuda" and cfg.run.precision in ("auto", "bf16")
        models = {"student": cfg.student, "critic": cfg.critic, "teacher": cfg.teacher,
                  SECOND + "teacher": cfg.second_score.teacher, SECOND + "critic": cfg.second_score.critic}
        self.ckpt = {r: m.gradient_checkpointing if options.checkpointing is None else options.checkpointing
                     for r, m in models.items()}
        self.causal = {r: m.causal for r, m in models.items()}
        frames, self.tpf, _ = _tokens(nets["student"].config, tuple(cfg.data.latent_shape))
        self.frames = frames
        # salt-ar's rollout: ar.rollout_frames when it streams past the scored clip (only the last clip has graph)
        T, H, W = cfg.data.latent_shape
        self.rollout_latent = (cfg.ar.rollout_frames or T, H, W)
        self.rollout_frames = self.rollout_latent[0] // nets["student"].config.patch_size[0]
        self.clip = Shape(frames * self.tpf, frames * self.tpf, micro_batch, fused=micro_batch == 1)
        self.prompt = nets["student"].config.text_len

    def scored(self, net: Net) -> Shape:
        """The clip as a real score or critic sees it: whole, or (causal: an AR teacher's form) the clean clip and
        its noised copy in one teacher-forcing pass, 2T frames with a timestep per frame."""
        if not self.causal[net.role]:
            return self.clip
        return Shape(2 * self.clip.tokens, 2 * self.clip.keys, self.b, fused=False)

    def scores(self) -> list[tuple[Net, Net]]:
        """(teacher, critic) of each real score."""
        out = [(self.nets["teacher"], self.nets["critic"])]
        if SECOND + "teacher" in self.nets:
            out.append((self.nets[SECOND + "teacher"], self.nets[SECOND + "critic"]))
        return out

    def sharded(self, net: Net, bytes_per_param: int) -> float:
        return bytes_per_param * (net.block_params / self.shard + (net.params - net.block_params))

    def graph(self, net: Net, shape: Shape) -> float:
        return forward_bytes(net.config, shape, bf16=self.bf16, checkpointing=self.ckpt[net.role],
                             prompt_tokens=self.prompt)

    def backward(self, net: Net, shape: Shape) -> float:
        """One block rebuilt under checkpointing, plus a block's backward workspace."""
        rebuilt = forward_bytes(net.config, shape, bf16=self.bf16, checkpointing=False, prompt_tokens=self.prompt,
                                layers=1) if self.ckpt[net.role] else 0.0
        return rebuilt + working_bytes(net.config, shape, self.bf16)

    def gather(self, net: Net) -> float:
        """FSDP all-gathers (an offloaded teacher uploads) the current and the next block, fp32."""
        two_blocks = 2 * FP32 * net.block_params / net.config.num_layers
        if net.role == "teacher" and self.o.offload_teacher:
            return two_blocks
        return two_blocks * (1 - 1 / self.shard) if self.shard > 1 else 0.0

    def copies(self, net: Net) -> float:
        """autocast's bf16 cast of every weight of a trainable network, cached for the whole forward."""
        return 2.0 * net.params if self.bf16 else 0.0

    def static(self) -> dict[str, float]:
        s, scores = self.nets["student"], self.scores()
        teacher_bytes = 2 if self.bf16 else FP32  # the frozen teacher is kept in bf16 under bf16 autocast
        out = {f"weights {t.role} ({'bf16' if self.bf16 else 'fp32'}, frozen)":
               0.0 if self.o.offload_teacher else self.sharded(t, teacher_bytes) for t, _ in scores}
        for net in (s, *(k for _, k in scores)):
            out[f"weights {net.role} (fp32 = master)"] = self.sharded(net, FP32)
        for net in (s, *(k for _, k in scores)):
            out[f"AdamW {net.role} (2 fp32 states)"] = self.sharded(net, 2 * FP32)
        if self.cfg.ema.enabled:
            out["EMA student (fp32 shadow)"] = self.sharded(s, FP32)
        return out

    def chunk_shapes(self) -> list[Shape]:
        """The causal rollout's chunk forwards: chunk tokens against the kept past frames + the chunk."""
        chunk, policy = self.cfg.ar.chunk_frames, self.cfg.ar.cache
        kept = [c * chunk if policy.kind == "full" else min(c * chunk, policy.capacity)
                for c in range(self.rollout_frames // chunk)]
        return [Shape(chunk * self.tpf, (p + chunk) * self.tpf, self.b, fused=self.b == 1) for p in kept]

    def student_phase(self, command: str) -> Phase:
        cfg, t, s, k = self.cfg, self.nets["teacher"], self.nets["student"], self.nets["critic"]
        p = Phase("student", gradients=2 * self.sharded(s, FP32))  # gradients + the AdamW step's temporaries
        current = self.clip
        if command == "salt-ar":
            shapes = self.chunk_shapes()
            current = shapes[-1]
            scored = shapes[len(shapes) - self.frames // cfg.ar.chunk_frames:]  # the chunks with gradient
            p.activations["student chunk exit forwards"] = sum(self.graph(s, sh) for sh in scored)
            p.items["KV cache of the rollout"] = kv_cache_bytes(s.config, cfg, self.b, self.rollout_latent, self.bf16)
            if cfg.ar.fa_weight > 0 and len(shapes) >= 2:
                p.activations["feature alignment (current chunk, C_low)"] = self.graph(s, current)
                p.items["KV caches C_low + C_high"] = 2 * p.items["KV cache of the rollout"]
        else:
            p.activations["student exit forward"] = self.graph(s, self.clip)
        if command != "dmd" and cfg.sc.weight > 0 and cfg.sc.form == "semigroup":
            p.activations["SC direct path (second student forward)"] = self.graph(s, current)
        p.items["autocast bf16 copies of the student"] = self.copies(s)
        p.transient["no-grad forward (rollout, DMD teachers / critics)"] = max(
            [working_bytes(n.config, self.scored(n), self.bf16) for pair in self.scores() for n in pair]
            + [working_bytes(s.config, current, self.bf16)])
        p.transient["block recompute + backward"] = self.backward(s, current)
        p.transient["FSDP gather (2 blocks)"] = max([self.gather(t) for t, _ in self.scores()] + [self.gather(s)])
        if cfg.trd.weight > 0:
            # the teacher stops after the feature block (features_only): the later blocks never run
            share = (cfg.trd.block + 1) / t.config.num_layers
            p.activations["TRD: frozen teacher forward with input gradient"] = share * self.graph(t, self.clip)
            if self.bf16 and not self.ckpt["teacher"]:
                p.items["TRD: bf16 weight copies the teacher's linears save"] = 2.0 * t.block_params
            p.transient["block recompute + backward"] = max(p.transient["block recompute + backward"],
                                                            self.backward(t, self.clip))
            if command == "salt-ar":
                p.items["TRD: reference rollout KV cache"] = p.items["KV cache of the rollout"]
        return p

    def critic_phase(self, command: str, k: Net, name: str) -> Phase:
        """The update of critic `k` (phase `name`) on a no-grad student sample, in its teacher's form."""
        s = self.nets["student"]
        p = Phase(name, gradients=2 * self.sharded(k, FP32))
        p.activations[f"{name} forward"] = self.graph(k, self.scored(k))
        p.items[f"autocast bf16 copies of the {name}"] = self.copies(k)
        current = self.clip
        if command == "salt-ar":
            current = self.chunk_shapes()[-1]
            p.items["KV cache of the no-grad rollout"] = kv_cache_bytes(s.config, self.cfg, self.b,
                                                                        self.rollout_latent, self.bf16)
        p.transient["no-grad forward (rollout)"] = working_bytes(s.config, current, self.bf16)
        p.transient["block recompute + backward"] = self.backward(k, self.scored(k))
        p.transient["FSDP gather (2 blocks)"] = max(self.gather(k), self.gather(s))
        return p


def plan_memory(cfg: TrainConfig, command: str, options: Options) -> MemoryPlan:
    """The memory plan of `command` under `cfg` on options.gpus GPUs (ConfigError for what cannot be planned)."""
    if command not in COMMANDS:
        raise ConfigError(f"plan covers the distillation commands {list(COMMANDS)}, got {command!r}")
    if options.gpus < 1:
        raise ConfigError(f"--gpus must be >= 1, got {options.gpus}")
    if options.device not in ("cuda", "cpu"):
        raise ConfigError(f"--device must be 'cuda' or 'cpu', got {options.device!r}")
    accumulation = options.accumulation or cfg.optim.accumulation
    check_accumulation(cfg.data.batch_size, accumulation, options.gpus)
    nets = build_nets(cfg)
    _check(cfg, command, nets)
    est = _Estimate(cfg, options, nets, cfg.data.batch_size // options.gpus // accumulation)
    notes = []
    if options.offload_teacher:
        notes.append("teacher weights on the CPU, two blocks at a time on the GPU (distributed.offload_teacher: "
                     "FSDP2 CPUOffloadPolicy, under torchrun with 2+ processes): each teacher forward streams the "
                     "teacher over PCIe")
    if est.shard == 1 and options.gpus > 1:
        notes.append(f"distributed.strategy is {cfg.distributed.strategy!r}: every GPU holds full copies")
    phases = [est.student_phase(command)] + [est.critic_phase(command, k, "critic" if i == 0 else "critic2")
                                             for i, (_, k) in enumerate(est.scores())]
    return MemoryPlan(command, dataclasses.replace(options, accumulation=accumulation), nets, est.b, est.shard,
                      est.bf16, est.static(), phases, notes)

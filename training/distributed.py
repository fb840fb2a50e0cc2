"""Process groups under torchrun, gradient averaging, metric reduction and FSDP wrapping.

Data parallelism ("ddp") keeps a full replica per rank and averages gradients with an explicit
bucketed all-reduce after backward. We do not use torch's DistributedDataParallel wrapper: the causal
rollout calls `forward_chunk` (not `forward`) and several student forwards feed one backward, which
DDP's forward-hook reducer does not see. The averaged gradient is the same quantity DDP computes.

"fsdp" shards the transformer blocks (nearly all parameters) with FSDP2 `fully_shard`, which
reduce-scatters their gradients itself; the small embedding / head modules stay replicated and are
averaged like "ddp" (the model reads some of their weights directly, outside any module call).
Only rank 0 writes files; every rank runs the same steps on its shard of the global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist
from torch import nn

_BUCKET_BYTES = 32 * 1024 * 1024


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    strategy: str = "ddp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_mean_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(self.world_size)
        return t

    def reduce_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """Mean of every scalar over the ranks (all ranks hold the same keys)."""
        if not self.enabled or not stats:
            return dict(stats)
        keys = sorted(stats)
        vec = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=self._comm_device())
        self.all_reduce_mean_(vec)
        return dict(zip(keys, vec.tolist()))

    def all_true(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([0.0 if flag else 1.0], device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item() == 0.0

    def sync_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Average gradients over the ranks. A gradient missing on some ranks counts as zero there.
        FSDP-sharded parameters (DTensors) were already reduced by FSDP and are skipped."""
        if not self.enabled:
            return
        params = [p for p in params if p.requires_grad and not is_dtensor(p)]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self._comm_device())
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        grads = []
        for p, any_rank in zip(params, has.tolist()):
            if any_rank and p.grad is None:
                p.grad = torch.zeros_like(p)
            if p.grad is not None:
                grads.append(p.grad)
        for bucket in _buckets(grads):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(self.world_size)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset: offset + g.numel()].view_as(g))
                offset += g.numel()

    def broadcast_module(self, module: nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers."""
        if not self.enabled:
            return
        for t in list(module.parameters()) + list(module.buffers()):
            if not is_dtensor(t):
                dist.broadcast(t.data, src=0)

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _buckets(grads: list[torch.Tensor]) -> Iterable[list[torch.Tensor]]:
    bucket, size = [], 0
    for g in grads:
        if bucket and (size + g.numel() * g.element_size() > _BUCKET_BYTES or g.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(g)
        size += g.numel() * g.element_size()
    if bucket:
        yield bucket


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("run.device is 'cuda' but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(f"cuda:{local_rank}")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"run.device must be 'auto', 'cpu' or 'cuda', got {name!r}")


def setup(device: str = "auto", strategy: str = "ddp", backend: str = "auto") -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1; otherwise a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if dev.type == "cuda" else "gloo"
        if backend == "nccl" and dev.type != "cuda":
            raise ValueError("distributed.backend 'nccl' needs CUDA devices; use 'gloo' on CPU")
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    return DistContext(rank, world, local_rank, dev, strategy)


def teardown(ctx: Optional[DistContext] = None) -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---- FSDP ----------------------------------------------------------------------------------------

def is_dtensor(t) -> bool:
    return type(t).__name__ == "DTensor" or hasattr(t, "device_mesh")


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a (possibly sharded) DTensor, on the CPU. Collective for DTensors."""
    return (t.full_tensor() if is_dtensor(t) else t).detach().cpu()


def shard_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A full tensor laid out like `like` (a DTensor's local shard, or as is)."""
    if not is_dtensor(like):
        return value.to(like.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(like.device_mesh.device_type), like.device_mesh, like.placements)


def shard_module(model: nn.Module, ctx: DistContext, *, offload: bool = False) -> nn.Module:
    """FSDP2 on every transformer block (and its cross-attention, whose `context_kv` is called outside the
    block's forward) under a root that ignores the small top-level modules (kept replicated). The causal
    entry points `forward_chunk` / `set_prompt` are registered so they gather parameters like `forward`.
    offload: the shards live in CPU memory and are copied to the device per forward (CPUOffloadPolicy; for a
    frozen network: no gradients or optimiser states to keep beside them)."""
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard, register_fsdp_forward_method

    if not ctx.enabled:
        return model
    kw = {"offload_policy": CPUOffloadPolicy(pin_memory=torch.cuda.is_available())} if offload else {}
    for block in model.blocks:
        fully_shard(block.cross_attn, **kw)
        register_fsdp_forward_method(block.cross_attn, "context_kv")
        fully_shard(block, **kw)
    top = {p for name, p in model.named_parameters() if not name.startswith("blocks.")}
    fully_shard(model, ignored_params=top, **kw)
    for method in ("forward_chunk", "set_prompt"):
        register_fsdp_forward_method(model, method)
    return model


# ---- full (unsharded) state for checkpoints; no-ops for replicated tensors ------------------------

def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: full(v) for k, v in module.state_dict().items()}


def load_module_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    current = module.state_dict()
    module.load_state_dict({k: shard_like(v, current[k]) if k in current else v for k, v in state.items()})


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    sd = optimizer.state_dict()
    sd["state"] = {i: {k: full(v) if isinstance(v, torch.Tensor) else v for k, v in st.items()}
                   for i, st in sd["state"].items()}
    return sd


def load_optimizer_state(optimizer: torch.optim.Optimizer, sd: dict) -> None:
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state = {}
    for i, st in sd["state"].items():
        p = params[int(i)]
        state[i] = {k: shard_like(v, p) if is_dtensor(p) and isinstance(v, torch.Tensor) and v.ndim else v
                    for k, v in st.items()}
    optimizer.load_state_dict({**sd, "state": state})

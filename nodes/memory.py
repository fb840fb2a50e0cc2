"""Where the DiT and the VAE are while the nodes use them.

Inside ComfyUI both are ComfyUI models: each gets a `comfy.model_patcher.ModelPatcher` (load device = the
loader's device, offload device = ComfyUI's: the CPU, or the GPU under --highvram; with the loader's `offload`
off, the load device itself) and `comfy.model_management.load_models_gpu` loads it before sampling / decoding.
So they share VRAM with core models: they are listed in `current_loaded_models` with their size, ComfyUI evicts
them when another model needs the room, and *Unload Models* (`POST /free`) offloads them. Between runs they stay
loaded, as core models do.

* --lowvram / --novram / too little free VRAM: ComfyUI loads as many DiT layers as fit and leaves the rest in
  CPU memory, flagged `comfy_cast_weights`; our layers then bring those weights to the GPU per call
  (`salt_core.dit.layers.HostCast`; synchronous copies, not on ComfyUI's offload stream).
* The VAE (about 0.5 GB) is always loaded whole (`force_full_load`); under --novram, where ComfyUI still loads
  only a sliver of it, the rest is moved in for the decode and back out afterwards (our VAE layers do not cast
  per call).
* Block swap (`blocks_on_device` > 0): ComfyUI manages the resident part only (embeddings, head, the first N
  blocks); the streamed blocks stay in pinned CPU memory and are copied in by `salt_core.dit.offload`, which
  adds two blocks of device memory to the sampling estimate.

Outside ComfyUI (plain Python, tests) the same calls move the modules to the device and back.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn

from . import host

log = logging.getLogger("salt.nodes")


class Placement(NamedTuple):
    """A loader's placement settings, carried by the loaded object (`salt_placement`)."""

    device: str = "auto"
    offload: bool = True  # the weights may go back to the offload device between runs
    blocks_on_device: int = 0  # block swap: transformer blocks kept on the device (0 = all)


def set_placement(obj, placement: Placement) -> None:
    obj.salt_placement = placement


def placement(obj) -> Placement:
    return getattr(obj, "salt_placement", Placement())


# ---- what ComfyUI's ModelPatcher manages (class names appear in its log: "Requested to load SaltDiT") ----------

def _tensor_bytes(module: nn.Module) -> int:
    """Parameters and every buffer (LoRA factors are non-persistent buffers, outside the state dict)."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


class SaltDiT(nn.Module):
    """The DiT's modules ComfyUI moves: all of it, or with a block swap only the resident ones. Its `device` is
    the DiT's compute device, so ComfyUI's low-VRAM loading tells the DiT where to compute."""

    def __init__(self, dit: nn.Module):
        super().__init__()
        from salt_core.dit.offload import resident_modules

        parts = resident_modules(dit)
        named = {n: m for n, m in dit.named_children() if n != "blocks"}
        self.parts = nn.ModuleDict({"diffusion_model": dit} if parts == [dit] else
                                   {**named, **{f"block_{i}": dit.blocks[i] for i in range(dit.block_swap.resident)}})
        self._dit = (dit,)  # a tuple: not registered again as a submodule

    @property
    def device(self) -> torch.device:
        return self._dit[0].device

    @device.setter
    def device(self, value) -> None:
        self._dit[0].run_device = torch.device(value)

    def get_dtype(self) -> torch.dtype:
        return self._dit[0].dtype


class SaltVAE(nn.Module):
    """The VAE's modules ComfyUI moves (its children; no reference back to the VAE object, which holds the
    patcher: no reference cycle)."""

    def __init__(self, vae: nn.Module, device: torch.device):
        super().__init__()
        self.parts = nn.ModuleDict(dict(vae.named_children()))
        self.device = device

    def get_dtype(self) -> torch.dtype:
        return next(self.parts.parameters()).dtype


# ---- memory a run needs besides the weights (ComfyUI's `memory_required`) --------------------------------

def sampling_bytes(dit, plan, latent_frames: int, latent_hw: tuple[int, int], guided: bool = False) -> int:
    """An estimate of one sampling run's device memory besides the resident weights: the KV cache (causal), the
    largest per-forward activations, and two streamed blocks under a block swap. guided: classifier-free guidance,
    a second prompt and (causal) a second KV cache."""
    c = dit.config
    elt = max(dit.dtype.itemsize, 2)  # activations and caches: the compute dtype (8-bit weights compute in bf16)
    per_frame = (latent_hw[0] // c.patch_size[1]) * (latent_hw[1] // c.patch_size[2])
    frames = plan.layout.chunk_frames if plan.causal else latent_frames
    tokens = frames * per_frame * (plan.layout.batch if plan.causal else 1)
    total = tokens * (6 * c.dim + 2 * c.ffn_dim) * 4  # fp32 residual stream and its copies, the FFN hidden
    prompts = 2 if guided else 1
    total += prompts * c.num_layers * 2 * c.text_len * c.dim * elt  # cross-attention K/V of the prompt(s)
    if plan.causal:
        cached = min(plan.policy.capacity, latent_frames) + plan.layout.chunk_frames
        total += prompts * c.num_layers * 2 * cached * per_frame * plan.layout.batch * c.dim * elt
    if dit.block_swap is not None:
        total += 2 * dit.block_swap.block_bytes()
    return int(total)


def decode_bytes(vae, latent_hw: tuple[int, int], batch: int, chunk_frames: int = 1) -> int:
    """An untiled streaming decode's device memory besides the weights (salt_core's estimate from the decoder's
    structure: caches, one pass's transients, a chunk's frames; a tiled decode's is `plan_clip_decode`'s)."""
    from salt_core.vae import DecodeCall, TilePlan, estimate_decode_memory

    return estimate_decode_memory(vae, TilePlan.whole(tuple(latent_hw)), DecodeCall(batch, chunk_frames, 1, True)).total


# ---- using a model ---------------------------------------------------------------------------------

def _patcher(obj, make):
    p = getattr(obj, "salt_patcher", None)
    if p is None:
        p = obj.salt_patcher = make()
    return p


def _dit_patcher(model, api):
    _, ModelPatcher = api
    where = placement(model)
    load = host.compute_device(where.device)
    offload = host.offload_device() if where.offload else load
    if where.blocks_on_device:
        from salt_core.dit.offload import enable_block_swap

        enable_block_swap(model.dit, where.blocks_on_device, load, move_resident=False)
        if load.type == "cpu":
            log.info("salt: block swap on the CPU streams from CPU memory to itself: it saves no memory")
    hosted = SaltDiT(model.dit)
    return ModelPatcher(hosted, load_device=load, offload_device=offload, size=_tensor_bytes(hosted))


def _vae_patcher(vae, api):
    _, ModelPatcher = api
    where = placement(vae)
    load = host.compute_device(where.device, role="vae")
    offload = host.offload_device(role="vae") if where.offload else load
    hosted = SaltVAE(vae, next(vae.parameters()).device)
    return ModelPatcher(hosted, load_device=load, offload_device=offload, size=_tensor_bytes(hosted))


@contextmanager
def _moved(modules: list[nn.Module], device: torch.device, back: torch.device | None):
    """Outside ComfyUI: modules on `device` while in use, then on `back` (None: they stay)."""
    for m in modules:
        m.to(device)
    try:
        yield device
    finally:
        if back is not None and back != device:
            for m in modules:
                m.to(back)
            host.release_cache()


@contextmanager
def dit_on_device(model, plan, latent_frames: int, latent_hw: tuple[int, int], guided: bool = False):
    """The model's DiT ready to sample on its compute device (yielded)."""
    api = host.model_management()
    if api is not None:
        patcher = _patcher(model, lambda: _dit_patcher(model, api))
        need = sampling_bytes(model.dit, plan, latent_frames, latent_hw, guided)
        api[0].load_models_gpu([patcher], memory_required=need)
        yield patcher.load_device
        return
    from salt_core.dit.offload import enable_block_swap, resident_modules

    where = placement(model)
    device = host.compute_device(where.device)
    if where.blocks_on_device and model.dit.block_swap is None:
        enable_block_swap(model.dit, where.blocks_on_device, device)
    with _moved(resident_modules(model.dit), device, host.offload_device() if where.offload else None):
        yield device


@contextmanager
def vae_on_device(vae, memory_required: int):
    """The VAE ready to decode on its device (yielded); memory_required: the decode's bytes besides the
    weights (`decode_bytes`), which ComfyUI frees before loading."""
    api = host.model_management()
    if api is None:
        where = placement(vae)
        device = host.compute_device(where.device, role="vae")
        with _moved([vae], device, host.offload_device(role="vae") if where.offload else None):
            yield device
        return
    patcher = _patcher(vae, lambda: _vae_patcher(vae, api))
    api[0].load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    with _leftovers_on(patcher.model, patcher.load_device):
        yield patcher.load_device


@contextmanager
def _leftovers_on(module: nn.Module, device: torch.device):
    """Tensors the host left elsewhere (a partial load) on `device` for the duration, then back where they were."""
    def elsewhere(t: torch.Tensor) -> bool:  # 'cuda' and 'cuda:0' are the same device here
        return t.device.type != device.type or (device.index is not None and t.device.index != device.index)

    moved = [(t, t.data) for t in (*module.parameters(), *module.buffers()) if elsewhere(t)]
    if moved:
        log.info("salt: %d VAE tensors were left off %s by a partial load; moved in for this decode", len(moved),
                 device)
    for t, old in moved:
        t.data = old.to(device)
    try:
        yield
    finally:
        for t, old in moved:
            t.data = old

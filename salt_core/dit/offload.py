"""Block swap: run a DiT whose weights do not fit the device by keeping its first N transformer blocks there and
streaming the others in from CPU memory, one block ahead of the compute.

* Resident: every module outside `blocks` (embeddings, head) and blocks[:N] stay on the compute device.
* Streamed: blocks[N:] rest in CPU memory (page-locked when the device is CUDA, so copies are asynchronous). While
  the forward loop (`WanDiT.iter_blocks`) is at block i, block i+1 is already being copied; at block 0 the first
  streamed block starts. On CUDA the copies run on a side stream and the compute stream waits on an event per
  block (and each copy is marked as used by the compute stream, so its memory is reused only after the block ran);
  elsewhere they are plain copies. At most two streamed blocks are on the device at a time, and none between
  forward passes.
* A streamed block's parameters stay the same Parameter objects: their `.data` points at the device copy while
  the block runs and back at the CPU tensor afterwards, so nothing else about the model changes.
* Inference only: a streamed block's device weights are gone by the time a backward pass would need them, so
  iterating with gradient enabled is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import nn

CPU = torch.device("cpu")


def check_blocks_on_device(blocks_on_device, depth: int, setting: str = "blocks_on_device") -> int:
    """The number of resident blocks, checked: 0 (all of them, no swap) .. depth."""
    if isinstance(blocks_on_device, bool) or not isinstance(blocks_on_device, int) \
            or not 0 <= blocks_on_device <= depth:
        raise ValueError(f"{setting} must be a whole number from 0 to {depth} (this model has {depth} transformer "
                         f"blocks; 0 keeps all of them on the device), got {blocks_on_device!r}")
    return blocks_on_device


@dataclass
class _Copy:
    tensors: dict[str, torch.Tensor]  # name inside the block -> tensor on the compute device
    ready: Optional[torch.cuda.Event]  # recorded on the copy stream after the last copy (CUDA only)


def _tensors(block: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a block (LoRA patch factors and fp8 scales included), by name."""
    out = {n: p.data for n, p in block.named_parameters()}
    out.update(block.named_buffers())
    return out


def _assign(block: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Point the block's parameters (their .data) and buffers at `tensors`."""
    for name, t in tensors.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = block.get_submodule(owner_name) if owner_name else block
        if leaf in owner._parameters:
            p = owner._parameters[leaf]
            if torch._has_compatible_shallow_copy_type(p, t):  # CPU <-> CUDA: the same Parameter object
                p.data = t
            else:  # e.g. the meta device: a new Parameter over the tensor
                owner._parameters[leaf] = nn.Parameter(t, requires_grad=p.requires_grad)
        else:
            owner._buffers[leaf] = t


def _page_locked(t: torch.Tensor) -> torch.Tensor:
    t = t.to(CPU)
    return t if t.is_pinned() else t.pin_memory()


class BlockSwap:
    """Streams `dit.blocks[resident:]` from CPU memory during forward passes; attached as `dit.block_swap`."""

    def __init__(self, dit: nn.Module, resident: int, device: torch.device):
        depth = len(dit.blocks)
        if not 1 <= resident < depth:
            raise ValueError(f"a block swap keeps 1 to {depth - 1} of the {depth} blocks resident, got {resident}")
        self.blocks = dit.blocks
        self.resident = resident
        self.pinned = torch.device(device).type == "cuda"
        self.loads = 0  # streamed blocks copied to the device so far
        self._copies: dict[int, _Copy] = {}  # prefetched or running blocks
        self._at_rest: dict[int, dict[str, torch.Tensor]] = {}  # running blocks: their CPU tensors
        self._stream: Optional[torch.cuda.Stream] = None
        for i in self.streamed:
            _assign(self.blocks[i], {n: _page_locked(t) if self.pinned else t.to(CPU)
                                     for n, t in _tensors(self.blocks[i]).items()})

    @property
    def streamed(self) -> range:
        return range(self.resident, len(self.blocks))

    def __deepcopy__(self, memo):
        return None  # a copy of the model (e.g. a LoRA'd one) gets a swap of its own when it needs one

    def block_bytes(self) -> int:
        """Device memory of the largest streamed block (two are on the device at a time)."""
        return max(sum(t.numel() * t.element_size() for t in _tensors(self.blocks[i]).values()) for i in self.streamed)

    # ---- the forward loop ---------------------------------------------------------------------------
    def iterate(self, device: torch.device) -> Iterator[nn.Module]:
        if torch.is_grad_enabled():
            raise RuntimeError("block swap streams weights for inference only; run the model under torch.no_grad() "
                               "(or set blocks_on_device to 0 to keep every block on the device)")
        device = torch.device(device)
        self._settle()
        try:
            for i, block in enumerate(self.blocks):
                if i < self.resident:
                    if i == 0:
                        self._prefetch(self.resident, device)
                else:
                    self._prefetch(i, device)
                    if i + 1 < len(self.blocks):
                        self._prefetch(i + 1, device)
                    self._swap_in(i, device)
                yield block
                if i >= self.resident:
                    self._swap_out(i)
        finally:
            self._settle()

    def _prefetch(self, i: int, device: torch.device) -> None:
        if i in self._copies:
            return
        src = _tensors(self.blocks[i])
        if device.type == "cuda":
            if self._stream is None or self._stream.device != device:
                self._stream = torch.cuda.Stream(device)
            with torch.cuda.stream(self._stream):
                tensors = {n: t.to(device, non_blocking=True) for n, t in src.items()}
                ready = torch.cuda.Event()
                ready.record(self._stream)
        else:
            tensors, ready = {n: t.to(device, copy=True) for n, t in src.items()}, None
        self._copies[i] = _Copy(tensors, ready)
        self.loads += 1

    def _swap_in(self, i: int, device: torch.device) -> None:
        copy = self._copies[i]
        if copy.ready is not None:
            compute = torch.cuda.current_stream(device)
            compute.wait_event(copy.ready)
            for t in copy.tensors.values():
                t.record_stream(compute)
        self._at_rest[i] = _tensors(self.blocks[i])
        _assign(self.blocks[i], copy.tensors)

    def _swap_out(self, i: int) -> None:
        _assign(self.blocks[i], self._at_rest.pop(i))
        del self._copies[i]

    def _settle(self) -> None:
        """Back to the resting state: running blocks point at their CPU tensors, no copies kept (a pass that
        ended early, by an exception or a break, leaves nothing on the device)."""
        for i in list(self._at_rest):
            self._swap_out(i)
        self._copies.clear()


def enable_block_swap(dit: nn.Module, blocks_on_device: int, device, *, move_resident: bool = True
                      ) -> Optional[BlockSwap]:
    """Keep `blocks_on_device` blocks of `dit` on `device` and stream the others (0, or the depth: no swap).

    Moves the streamed blocks to CPU memory and (unless a host moves them itself: move_resident=False) the
    resident modules to `device`; returns the swap (also `dit.block_swap`), or None when every block stays on
    the device."""
    depth = len(dit.blocks)
    n = check_blocks_on_device(blocks_on_device, depth)
    device = torch.device(device)
    disable_block_swap(dit)
    if n not in (0, depth):
        dit.block_swap = BlockSwap(dit, n, device)
    if move_resident:
        for module in resident_modules(dit):
            module.to(device)
    return dit.block_swap


def disable_block_swap(dit: nn.Module) -> None:
    """Stop streaming (the streamed blocks stay in CPU memory until the model is moved)."""
    swap = getattr(dit, "block_swap", None)
    if swap is not None:
        swap._settle()
        dit.block_swap = None


def resident_modules(dit: nn.Module) -> list[nn.Module]:
    """The modules that stay on the compute device: every child but `blocks`, and the resident blocks."""
    swap = getattr(dit, "block_swap", None)
    if swap is None:
        return [dit]
    others = [m for name, m in dit.named_children() if name != "blocks"]
    return others + list(dit.blocks[:swap.resident])

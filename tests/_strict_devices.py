"""A CPU-only machine has one real device; these helpers make a second one out of `meta` (shapes only, no data)
and make it as strict as CUDA: any torch call mixing tensors of two devices raises, so a weight that is used
where it was left, instead of being brought to the compute device, is caught."""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

META = torch.device("meta")
# Calls that move a tensor or point a parameter at a moved one (not computations).
_MOVES = {"copy_", "_has_compatible_shallow_copy_type", "__set__"}


class StrictDevices(TorchFunctionMode):
    """Raise on any call whose tensor arguments live on two devices (0-d CPU scalars are allowed, as on CUDA)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        devices = {t.device for t in flat if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.ndim == 0)}
        if len(devices) > 1 and getattr(func, "__name__", None) not in _MOVES:
            raise RuntimeError(f"{getattr(func, '__name__', func)} mixes tensors on {sorted(map(str, devices))}")
        self.calls += 1
        return func(*args, **kwargs)

"""Data-dependent initialisation of a fresh video VAE (layer-sequential unit variance, "LSUV").

With PyTorch's default conv init every layer of the Wan VAE shrinks its input (a causal 3x3x3 conv sees
zeros in two of its three time taps on the first frame), so at step 0 the encoder's latent barely depends
on the image (measured on the tiny preset: std of mu over a batch 0.04) and the RMS-normalised decoder
learns a mean colour and no object colours for hundreds of steps (benchmarks/quality/README.md). Rescaling
each conv, in the order the forward calls it, so that its output has unit standard deviation on a batch of
real clips starts training with a latent that carries the image (std over the batch ~0.5).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


@torch.no_grad()
def lsuv_init(model: nn.Module, forward: Callable[[], object], passes: int = 2, eps: float = 1e-6) -> int:
    """Scale every Conv2d / Conv3d of `model` (weights and bias) so its output std on `forward()` is ~1.

    forward: runs the model on a fixed batch (its outputs are ignored). Convs whose weights are all zero
    (identity-start layers such as the attention projection) are left as they are. Returns how many convs
    it visited (those this forward does not reach, or whose output is constant, keep their scale)."""
    convs = _in_call_order(model, forward)
    for conv in convs:
        moments = torch.zeros(3, dtype=torch.float64)  # count, sum, sum of squares over every call (chunk)
        def record(_module, _inputs, out, moments=moments) -> None:  # returns None: the output is kept
            moments.add_(_moments(out))

        hook = conv.register_forward_hook(record)
        try:
            for _ in range(passes):
                moments.zero_()
                forward()
                std = _std(moments)
                if not std > eps:  # not reached by this forward, or a constant output: leave it
                    break
                conv.weight.div_(std)
                if conv.bias is not None:
                    conv.bias.div_(std)
        finally:
            hook.remove()
    return len(convs)


def _in_call_order(model: nn.Module, forward: Callable[[], object]) -> list[nn.Module]:
    """The non-zero convs in the order the forward first calls them (module order differs: an upsampling
    Resample registers its spatial conv before the temporal one it runs first)."""
    order: list[nn.Module] = []
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and bool(m.weight.any())]
    hooks = [m.register_forward_hook(lambda m, _i, _o: None if m in order else order.append(m)) for m in convs]
    try:
        forward()
    finally:
        for h in hooks:
            h.remove()
    return order


def _moments(out: torch.Tensor) -> torch.Tensor:
    x = out.detach().double()
    return torch.stack([torch.tensor(float(x.numel()), dtype=torch.float64), x.sum(), x.square().sum()])


def _std(moments: torch.Tensor) -> float:
    n, total, squares = moments.tolist()
    if n < 2:
        return 0.0
    mean = total / n
    return max(squares / n - mean * mean, 0.0) ** 0.5

"""Cache-conditioned feature alignment (cache-distribution-aware AR training).

The student runs the same chunk input x_t twice: against a low-quality cache C_low and against a
high-quality reference cache C_high. This loss pulls the features under C_low toward sg(features
under C_high): chosen block outputs and/or the clean estimate x̂0.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

NORMALIZE = ("layernorm", "none", "cosine")


def _distance(low: torch.Tensor, high: torch.Tensor, normalize: str, eps: float) -> torch.Tensor:
    """Per-sample distance of block features low [B, L, dim] to the detached high [B, L, dim] -> [B]."""
    low, high = low.float(), high.detach().float()
    if normalize == "cosine":
        return (1.0 - torch.nn.functional.cosine_similarity(low, high, dim=-1, eps=eps)).mean(dim=1)
    if normalize == "layernorm":  # per token, no affine: scale-invariant, so growing the features gains nothing
        low = torch.nn.functional.layer_norm(low, low.shape[-1:], eps=eps)
        high = torch.nn.functional.layer_norm(high, high.shape[-1:], eps=eps)
    return (low - high).square().mean(dim=(1, 2))


def feature_alignment_loss(
    feats_low: dict[int, torch.Tensor],
    feats_high: dict[int, torch.Tensor],
    x0_low: Optional[torch.Tensor] = None,
    x0_high: Optional[torch.Tensor] = None,
    *,
    layers: Optional[Sequence[int]] = None,
    use_x0: bool = False,
    normalize: str = "layernorm",
    x0_weight: float = 1.0,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, dict]:
    """Distance of the low-cache features to sg(high-cache features), averaged over the chosen terms.

    feats_low / feats_high: {block index: [B, L, dim]} from `return_features`; x0_low / x0_high:
    [B, C, F, H, W] clean estimates. layers: block indices to align (None = every key of feats_low; empty =
    no block features). normalize (block features only): "layernorm" — mean squared gap of per-token
    layer-normalised features (scale-free, so the student cannot shrink it by inflating the residual
    stream, which a target-norm ratio would reward), "none" — raw mean squared gap, "cosine" — 1 − cosine
    similarity per token. Block terms are averaged over layers. use_x0: add x0_weight · mean((x̂0_low −
    sg(x̂0_high))²) — plain MSE, x̂0 lives in the latent space whose scale is fixed.
    Returns (loss, stats {"fa_loss", "fa_layer_<i>", "fa_x0"}).
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"feature alignment normalize {normalize!r} is unknown; allowed: {list(NORMALIZE)}")
    keys = sorted(feats_low) if layers is None else [int(i) for i in layers]
    missing = [i for i in keys if i not in feats_low or i not in feats_high]
    if missing:
        raise ValueError(
            f"feature alignment: block(s) {missing} not in the returned features "
            f"(low {sorted(feats_low)}, high {sorted(feats_high)}); pass them to return_features"
        )
    if not keys and not use_x0:
        raise ValueError("feature alignment has nothing to align: give layers and/or use_x0=True")
    stats: dict = {}
    terms = []
    for i in keys:
        d = _distance(feats_low[i], feats_high[i], normalize, eps).mean()
        stats[f"fa_layer_{i}"] = d.item()
        terms.append(d)
    loss = torch.stack(terms).mean() if terms else None
    if use_x0:
        if x0_low is None or x0_high is None:
            raise ValueError("feature alignment with use_x0=True needs x0_low and x0_high")
        d = (x0_low.float() - x0_high.detach().float()).square().mean()
        stats["fa_x0"] = d.item()
        loss = x0_weight * d if loss is None else loss + x0_weight * d
    stats["fa_loss"] = loss.item()
    return loss, stats

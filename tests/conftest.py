import pytest
import torch

from salt_core.config import dit_preset
from salt_core.dit import WanDiT


def perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Randomise every parameter (norm gains and biases too), so parity tests can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model.eval()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny tensors: one thread is as fast, and immune to oversubscription


@pytest.fixture
def tiny_dit():
    torch.manual_seed(0)
    return perturbed(WanDiT(dit_preset("tiny")))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()

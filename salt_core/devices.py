"""Device names users type, turned into torch devices with a clear error for any that is not usable here."""
from __future__ import annotations

import re

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_ALIASES = {"gpu": "cuda"}


def resolve_device(name: str) -> torch.device:
    """'auto' (the first CUDA GPU when there is one, else the CPU), 'cpu', 'cuda' / 'gpu', 'cuda:N', 'mps'."""
    raw = str(name).strip().lower()
    raw = _ALIASES.get(raw, raw)
    if raw == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if raw == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", raw)
    if m:
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ValueError(f"device {name!r}: no CUDA GPU is usable here (torch {torch.__version__} is {build}); "
                             "use --device auto or cpu")
        index = int(m.group(1) or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA GPU(s), numbered 0..{count - 1}")
        return torch.device("cuda", index)
    if raw == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r}: Apple's MPS is not available here; use --device auto or cpu")
        return torch.device("mps")
    raise ValueError(f"device {name!r} is unknown; allowed: {', '.join(DEVICE_CHOICES)} ('gpu' means cuda)")

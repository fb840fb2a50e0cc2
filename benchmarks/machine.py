"""A one-line description of the machine a benchmark ran on, for committed result tables."""
from __future__ import annotations

import os
import platform

import torch


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        load = "load average %.1f (shared machine)" % os.getloadavg()[0]
    except OSError:
        load = "load average unknown"
    return (
        f"{cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"{gpu}; Python {platform.python_version()}; {load}"
    )

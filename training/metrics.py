"""Metrics: one JSON object per line in output_dir/metrics.jsonl (rank 0), optional TensorBoard.

Lines are {"step": N, <name>: value, ...} (N = steps completed) or events {"step": N, "event": ...}
(e.g. a skipped update). On resume, lines past the checkpoint's step are dropped so the file reads as
one uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Optional

METRICS_FILE = "metrics.jsonl"


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf
    return v


def truncate_after(path: str, step: int) -> None:
    """Keep only lines with step <= `step` (a resumed run rewrites what came after its checkpoint)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
        except ValueError:
            continue  # a torn last line from a crash
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)


def read_metrics(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLogger:
    """Writes on rank 0 only (`enabled`); the other ranks hold a no-op logger."""

    def __init__(self, output_dir: str, *, enabled: bool, tensorboard: bool = False, resume_step: Optional[int] = None):
        self.enabled = enabled
        self.path = os.path.join(output_dir, METRICS_FILE)
        self._tb = None
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        if resume_step is not None:
            truncate_after(self.path, resume_step)
        elif os.path.exists(self.path):
            os.remove(self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(os.path.join(output_dir, "tensorboard"))
            except ImportError:
                print("warning: run.tensorboard is set but TensorBoard is not installed; logging to "
                      f"{self.path} only", file=sys.stderr)

    def log(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _clean(v) for k, v in sorted(values.items())}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def event(self, step: int, event: str, **info) -> None:
        if self.enabled:
            row = {"step": step, "event": event, **{k: _clean(v) for k, v in info.items()}}
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()

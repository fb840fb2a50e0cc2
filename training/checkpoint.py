"""Trainer-state checkpoints: atomic writes, safe reads, discovery, pruning and the resume check.

A checkpoint is one `torch.save` file holding only tensors, dicts, lists and primitives, so it loads with
`torch.load(weights_only=True)`:

    format "salt-trainer-v1", command, step, config_json, config_hash, primary (the exported network),
    nets {name: {dit_config (JSON), model, ema (or None), optimizer, updates}},
    rng {torch, cuda, python, numpy} (tensors), data {position, global_batch}, guard {skipped, consecutive}

Writes go through salt_core.atomic: a temp file next to the target (`.step-N.pt.<random>.salt.tmp.pt`), fsynced
and renamed over it, so a crash mid-save leaves the previous checkpoint intact; temps a killed process left behind
are removed at the next start, and a full disk is one "no space left on device while writing <path>" error.
"""
from __future__ import annotations

import json
import os
import random
import re
from typing import Optional

import numpy as np
import torch

from salt_core.atomic import atomic_write, remove_temps_in
from salt_core.checkpoints.detect import CheckpointError
from salt_core.checkpoints.io import load_torch_file

from .config_load import ConfigError, config_diff

FORMAT = "salt-trainer-v1"
SUBDIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


class TrainerCheckpointError(ValueError):
    """A trainer checkpoint that cannot be used; the message names the file."""


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, SUBDIR)


def checkpoint_path(output_dir: str, step: int) -> str:
    return os.path.join(checkpoint_dir(output_dir), f"step-{step:08d}.pt")


def list_checkpoints(folder: str) -> list[tuple[int, str]]:
    """(step, path) of finished checkpoints in a checkpoints folder, oldest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in os.listdir(folder) if (m := _NAME.match(n))]
    return sorted(found)


def latest_checkpoint(output_dir: str) -> Optional[str]:
    found = list_checkpoints(checkpoint_dir(output_dir))
    return found[-1][1] if found else None


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or a run folder (its latest checkpoint)."""
    if os.path.isdir(path):
        latest = latest_checkpoint(path) or (list_checkpoints(path)[-1][1] if list_checkpoints(path) else None)
        if latest is None:
            raise TrainerCheckpointError(f"{path}: no trainer checkpoints (step-*.pt) in this run folder")
        return latest
    if not os.path.exists(path):
        raise TrainerCheckpointError(f"{path}: no such trainer checkpoint")
    return path


def remove_stale_temps(folder: str) -> list[str]:
    """Delete the temp files killed saves left in a checkpoints folder (any step); returns their names."""
    return remove_temps_in(folder, lambda name: _NAME.match(name) is not None)


def prune(folder: str, keep_last: int) -> None:
    found = list_checkpoints(folder)
    for _, path in found[: max(0, len(found) - max(1, keep_last))]:
        os.remove(path)


def save_checkpoint(path: str, state: dict) -> str:
    """Atomically write a trainer state (temp file + fsync + rename)."""
    return atomic_write(path, lambda tmp: _save_state(state, tmp))


class _WriteRecorder:
    """A file for torch.save that remembers the OSError of a failed write (ENOSPC ...): torch's writer turns it
    into a bare "unexpected pos" RuntimeError, with or without a file object."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            self.error = self.error or e
            raise


def open_for_writing(path: str):
    """The file a checkpoint is written to (unbuffered: each write's error reaches torch.save at once)."""
    return open(path, "wb", buffering=0)


def _save_state(state: dict, tmp: str) -> None:
    with open_for_writing(tmp) as f:
        sink = _WriteRecorder(f)
        try:
            torch.save(state, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise


def load_checkpoint(path: str) -> dict:
    try:
        state = load_torch_file(path, mmap=False)  # the optimiser state is updated in place after loading
    except FileNotFoundError:
        raise TrainerCheckpointError(f"{path}: no such trainer checkpoint") from None
    except IsADirectoryError:
        raise TrainerCheckpointError(f"{path}: is a folder, not a trainer checkpoint") from None
    except CheckpointError as e:  # truncated zip, unpickling refused, garbage
        raise TrainerCheckpointError(f"cannot read trainer checkpoint: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise TrainerCheckpointError(f"{path}: not a salt trainer checkpoint (format {got!r}, expected {FORMAT!r}); "
                                     "to start from model weights use <network>.init instead of run.resume")
    return state


def check_resumable(state: dict, path: str, command: str, config_hash: str, config_dict: dict) -> None:
    """Refuse a checkpoint of another command or another trajectory-relevant config (names the differences)."""
    if state["command"] != command:
        raise ConfigError(f"{path}: this checkpoint was written by `{state['command']}`, not `{command}`; "
                          "start a new output_dir or set run.resume=never")
    if state["config_hash"] != config_hash:
        diff = config_diff(json.loads(state["config_json"]), config_dict)
        if not diff:  # only options added since, at the defaults that keep the old behaviour
            return
        listing = "\n  ".join(diff[:20])
        raise ConfigError(f"{path}: checkpoint was trained with another config (hash {state['config_hash']} != "
                          f"{config_hash}); differences (checkpoint -> now):\n  {listing}\n"
                          "use a new run.output_dir, or set run.resume=never to start over")


# ---- RNG states as tensors ---------------------------------------------------------------------

def capture_rng() -> dict:
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    py = rng["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))

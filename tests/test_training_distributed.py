"""`torchrun --nproc_per_node 2` (gloo, CPU) gives the same parameters after K steps as one process with
the same global batch.

Tolerance: every random draw of the `teacher` command is keyed by the sample's position in the global
stream, so both runs see the same data, noise levels and noise. What differs is float summation order
(two per-rank means averaged by all-reduce vs one mean over the batch), ~1e-7 relative per step; AdamW
amplifies it at most to lr-sized moves, so after 3 steps at lr 1e-3 we allow max |Δθ| <= 1e-5 (observed
~3e-7). FSDP (blocks sharded, embeddings replicated) must agree with the same tolerance.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from training.checkpoint import checkpoint_path, load_checkpoint

from _training_helpers import _one_thread, latents, quiet, run, sets  # noqa: F401

ATOL = 1e-5
STEPS = 3


def args(data: str) -> list[str]:
    return sets(data__path=data, data__batch_size=4, teacher__preset="tiny", optim__teacher__lr=1e-3,
                ema__start_step=1, flow__cond_dropout=0.25, run__export_on_finish="false")


def torchrun(out: str, data: str, *extra: str) -> None:
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node", "2", "-m", "training", "teacher",
           *args(data), *quiet(out, STEPS), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]


def max_diff(a: dict, b: dict, part: str) -> float:
    na, nb = a["nets"]["teacher"][part], b["nets"]["teacher"][part]
    return max((na[k] - nb[k]).abs().max().item() for k in na)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    data = latents(str(root / "latents"), count=8)
    out = str(root / "one")
    torch.set_num_threads(1)
    assert run("teacher", None, *args(data), *quiet(out, STEPS)) == 0
    return root, data, load_checkpoint(checkpoint_path(out, STEPS))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(single, strategy):
    root, data, one = single
    out = str(root / strategy)
    torchrun(out, data, *sets(distributed__strategy=strategy))
    two = load_checkpoint(checkpoint_path(out, STEPS))
    assert two["world_size"] == 2 and two["data"]["position"] == one["data"]["position"] == 4 * STEPS
    assert one["nets"]["teacher"]["updates"] == two["nets"]["teacher"]["updates"] == STEPS  # nothing skipped
    assert max_diff(one, two, "model") <= ATOL
    assert max_diff(one, two, "ema") <= ATOL
    assert os.listdir(os.path.join(out, "checkpoints")) == [f"step-{STEPS:08d}.pt"]  # only rank 0 wrote

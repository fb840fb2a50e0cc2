"""`torchrun --nproc_per_node 2` (gloo, CPU): both ranks train on their own half of every global batch,
their gradients are averaged, and they end with the parameters of one process trained on the whole batch.

Each rank records what it did (tests/_rank_probe.py wraps the trainer's loader, gradient sync, update and
fit): the sample ids it loaded, its losses, its gradients before and after the sync, its parameter shards
and its final weights.

Tolerance: every random draw of the `teacher` command is keyed by the sample's position in the global
stream, so both runs see the same data, noise levels and noise. What differs is float summation order
(two per-rank means averaged by all-reduce vs one mean over the batch), ~1e-7 relative per step; AdamW
amplifies it at most to lr-sized moves, so after 3 steps at lr 1e-3 we allow max |Δθ| <= 1e-5 (observed
5.2e-6, in time_embedding.0.weight). A run that sees only half of each batch ends 6e-3 away, far outside it.
"""
from __future__ import annotations

import json
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
GLOBAL_BATCH = 4
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_rank_probe.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def args(data: str, batch: int = GLOBAL_BATCH) -> list[str]:
    return sets(data__path=data, data__batch_size=batch, teacher__preset="tiny", optim__teacher__lr=1e-3,
                ema__start_step=1, flow__cond_dropout=0.25, run__export_on_finish="false")


def torchrun(out: str, data: str, probe_dir: str, *extra: str) -> list[dict]:
    """Train on 2 ranks; -> each rank's record (see _rank_probe.py), in rank order."""
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node", "2", PROBE, probe_dir, "teacher",
           *args(data), *quiet(out, STEPS), *extra]
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(os.path.join(probe_dir, f"rank{r}.pt"), weights_only=True) for r in range(2)]


def max_diff(a: dict, b: dict, part: str) -> float:
    na, nb = a["nets"]["teacher"][part], b["nets"]["teacher"][part]
    return max((na[k] - nb[k]).abs().max().item() for k in na)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process: the whole global batch, and (for contrast) only the first half of it."""
    root = tmp_path_factory.mktemp("dist")
    data = latents(str(root / "latents"), count=8)
    torch.set_num_threads(1)
    runs = {}
    for name, batch in (("whole", GLOBAL_BATCH), ("half", GLOBAL_BATCH // 2)):
        out = str(root / f"one_{name}")
        assert run("teacher", None, *args(data, batch), *quiet(out, STEPS)) == 0
        runs[name] = load_checkpoint(checkpoint_path(out, STEPS))
    return root, data, runs


@pytest.fixture(scope="module", params=["ddp", "fsdp"])
def two(request, single):
    root, data, _ = single
    strategy = request.param
    out = str(root / strategy)
    ranks = torchrun(out, data, str(root / f"probe_{strategy}"), *sets(distributed__strategy=strategy))
    return strategy, out, ranks, load_checkpoint(checkpoint_path(out, STEPS))


def test_two_processes_match_one_process_with_the_same_global_batch(single, two):
    _, _, runs = single
    strategy, out, _, saved = two
    one = runs["whole"]
    assert saved["world_size"] == 2 and saved["data"]["position"] == one["data"]["position"] == GLOBAL_BATCH * STEPS
    assert one["nets"]["teacher"]["updates"] == saved["nets"]["teacher"]["updates"] == STEPS  # nothing skipped
    assert max_diff(one, saved, "model") <= ATOL
    assert max_diff(one, saved, "ema") <= ATOL
    assert max_diff(runs["half"], saved, "model") > 100 * ATOL  # the tolerance tells half the data apart
    assert os.listdir(os.path.join(out, "checkpoints")) == [f"step-{STEPS:08d}.pt"]  # only rank 0 wrote


def test_each_rank_trains_on_its_own_half_of_every_global_batch(two):
    _, _, ranks, _ = two
    local = GLOBAL_BATCH // 2
    for r, rec in enumerate(ranks):
        assert (rec["rank"], rec["world_size"]) == (r, 2)
        assert rec["batches"] == [list(range(GLOBAL_BATCH * s + local * r, GLOBAL_BATCH * s + local * (r + 1)))
                                  for s in range(STEPS)]
        assert [(step, phase) for step, phase, _ in rec["losses"]] == [(s, "teacher") for s in range(STEPS)]
    losses = [[loss for _, _, loss in rec["losses"]] for rec in ranks]
    assert all(a != b for a, b in zip(*losses))  # different data, different losses


def test_rank_0_logs_the_mean_of_both_ranks_losses(two):
    _, out, ranks, _ = two
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    logged = {row["step"]: row["teacher/loss"] for row in rows if "teacher/loss" in row}
    assert sorted(logged) == list(range(1, STEPS + 1))
    for i in range(STEPS):
        mean = (ranks[0]["losses"][i][2] + ranks[1]["losses"][i][2]) / 2
        assert logged[i + 1] == pytest.approx(mean, rel=1e-6)


def test_gradients_are_averaged_over_the_ranks(two):
    strategy, _, ranks, _ = two
    assert len(ranks[0]["grads"]) == len(ranks[1]["grads"]) == STEPS
    for (before0, after0), (before1, after1) in zip(ranks[0]["grads"], ranks[1]["grads"]):
        assert before0.numel() > 0 and not torch.allclose(before0, before1)  # each rank's own gradient
        assert torch.equal(after0, after1)
        torch.testing.assert_close(after0, (before0 + before1) / 2, atol=1e-7, rtol=1e-5)


def test_both_ranks_end_with_identical_weights(two):
    _, _, ranks, saved = two
    w0, w1 = ranks[0]["weights"]["teacher"], ranks[1]["weights"]["teacher"]
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
        assert torch.equal(w0[k], saved["nets"]["teacher"]["model"][k]), k  # and rank 0 saved them


def test_fsdp_splits_the_block_parameters_between_the_ranks(two):
    strategy, _, ranks, _ = two
    shapes = [rec["shapes"]["teacher"] for rec in ranks]  # name -> (local shape, full shape, sharded)
    blocks = [k for k in shapes[0] if k.startswith("blocks.")]
    top = [k for k in shapes[0] if not k.startswith("blocks.")]
    assert blocks and top
    if strategy == "ddp":
        assert all(not sharded and local == whole for s in shapes for local, whole, sharded in s.values())
        return
    for k in blocks:  # FSDP2: dim 0 split in two consecutive parts (the second empty when dim 0 is 1)
        (l0, n0, d0), (l1, n1, d1) = shapes[0][k], shapes[1][k]
        assert d0 and d1 and n0 == n1, k
        assert l0[0] == (n0[0] + 1) // 2 and l0[0] + l1[0] == n0[0] and l0[1:] == l1[1:] == n0[1:], k
    for k in top:
        assert shapes[0][k] == shapes[1][k] and not shapes[0][k][2], k  # replicated
    held = sum(torch.Size(shapes[0][k][0]).numel() for k in blocks)
    assert held < 0.55 * sum(torch.Size(shapes[0][k][1]).numel() for k in blocks)  # rank 0 holds about half

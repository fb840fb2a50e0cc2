"""Gradient accumulation: N micro-batches per optimiser step equal one step on the whole batch.

Tolerance: the two runs differ only in float summation order (four micro-batch means averaged vs one
mean over the batch): < 1e-6 of the largest gradient, checked on the gradients the optimiser receives.
AdamW divides by sqrt(v), so an element whose gradient is itself ~1e-8 can move by up to a step size
differently; at lr 1e-4 for 3 steps we allow max |Δθ| <= 1e-5 (observed ~3e-6) while the weights move
~3e-4. The gradient check also catches a missing 1/N, to which AdamW's update is nearly blind.
"""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys

import pytest
import torch

from salt_core.config import dit_preset
from salt_core.dit import WanDiT
from training.checkpoint import checkpoint_path, load_checkpoint
from training.config import AdamWConfig
from training.config_load import ConfigError, config_from_dict
from training.data.loader import BatchLoader
from training.distributed import DistContext
from training.metrics import read_metrics
from training.task import NetSpec, Task
from training.trainer import Trainer, check_accumulation, micro_batches

from _training_helpers import _one_thread, latents, quiet, run, sets  # noqa: F401
from conftest import perturbed

ATOL = 1e-5
STEPS = 3


class Regression(Task):
    """A deterministic loss: the tiny DiT's flow regressed onto fixed targets (no random draws at all)."""

    def __init__(self, model):
        self.model = model

    def networks(self):
        return {"student": NetSpec(self.model, AdamWConfig(lr=1e-4, betas=(0.9, 0.999), grad_clip=0.0), ema=True)}

    def phases(self, step):
        return ["student"]

    def loss(self, phase, batch, step):
        v = self.model(batch["x"], batch["t"], batch["context"])
        return (v - batch["target"]).square().mean(), {"target_ms": batch["target"].square().mean().item()}


def dataset(n: int = 8) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(16, 2, 4, 4, generator=g), "t": torch.rand((), generator=g) * 1000,
             "context": torch.randn(5, 32, generator=g), "target": torch.randn(16, 2, 4, 4, generator=g),
             "prompt": f"p{i}"} for i in range(n)]


def train(model, out: str, accumulation: int):
    cfg = config_from_dict({
        "run": {"output_dir": out, "steps": STEPS, "log_every": 1, "progress": False, "export_on_finish": False},
        "data": {"batch_size": 4}, "optim": {"accumulation": accumulation}, "ema": {"start_step": 1},
    })
    loader = BatchLoader(dataset(), 4, shuffle=False)
    trainer = Trainer(cfg, "test", "hash", Regression(model), loader, DistContext())
    opt, grads = trainer.nets["student"].optimizer, []
    step = opt.step

    def recording_step(*args, **kwargs):  # the gradients AdamW is given
        grads.append([p.grad.clone() for p in opt.param_groups[0]["params"]])
        return step(*args, **kwargs)

    opt.step = recording_step
    trainer.fit()
    rows = [r for r in read_metrics(os.path.join(out, "metrics.jsonl")) if "student/loss" in r]
    return trainer, rows, grads


def test_four_micro_batches_equal_one_batch_of_four(tmp_path):
    torch.manual_seed(0)
    base = perturbed(WanDiT(dit_preset("tiny")), seed=3).train()
    one, rows_one, grads_one = train(copy.deepcopy(base), str(tmp_path / "one"), 1)
    four, rows_four, grads_four = train(copy.deepcopy(base), str(tmp_path / "four"), 4)
    assert len(grads_one) == len(grads_four) == STEPS
    for g1, g4 in zip(grads_one, grads_four):
        scale = max(g.abs().max().item() for g in g1)
        assert max((a - b).abs().max().item() for a, b in zip(g1, g4)) <= 5e-6 * scale  # observed <= 8e-7
    moved = max((a - b).abs().max().item() for a, b in zip(one.task.model.parameters(), base.parameters()))
    assert moved > 2e-4  # the weights really changed
    diff = max((a - b).abs().max().item() for a, b in zip(one.task.model.parameters(), four.task.model.parameters()))
    assert diff <= ATOL
    ema = max((a - b).abs().max().item() for a, b in zip(one.nets["student"].ema.shadow, four.nets["student"].ema.shadow))
    assert ema <= ATOL
    assert len(rows_one) == len(rows_four) == STEPS
    for r1, r4 in zip(rows_one, rows_four):
        for key in ("student/loss", "student/grad_norm", "student/target_ms"):
            assert r4[key] == pytest.approx(r1[key], rel=1e-5), key


def test_micro_batches_split_tensors_and_lists_along_the_samples():
    batch = {"x": torch.arange(8).view(4, 2), "prompt": ["a", "b", "c", "d"], "sample_id": torch.arange(4), "tag": 7}
    parts = micro_batches(batch, 2)
    assert [p["prompt"] for p in parts] == [["a", "b"], ["c", "d"]]
    assert torch.equal(parts[1]["x"], torch.tensor([[4, 5], [6, 7]])) and parts[1]["tag"] == 7
    assert micro_batches(batch, 1)[0] is batch
    with pytest.raises(ValueError, match="equal parts"):
        micro_batches(batch, 3)


def test_accumulation_must_split_each_ranks_batch():
    check_accumulation(8, 2, 2)
    with pytest.raises(ConfigError, match=r"data.batch_size=4 over 2 rank\(s\) .*optim.accumulation=4"):
        check_accumulation(4, 4, 2)


def test_a_non_dividing_accumulation_is_one_error_line_before_any_compute(tmp_path, capsys):
    out = str(tmp_path / "run")
    code = run("teacher", None, *sets(data__path=str(tmp_path / "missing"), data__batch_size=4, teacher__preset="tiny",
                                      optim__accumulation=3), *quiet(out, 1))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error:") and "optim.accumulation=3" in err[0] and "data.batch_size=4" in err[0]
    assert not os.path.exists(out)


def test_teacher_training_with_accumulation_matches_the_whole_batch(tmp_path):
    """A real command whose draws are keyed per sample: accumulation 2 gives the batch-4 update."""
    data = latents(str(tmp_path / "latents"), count=8)
    common = sets(data__path=data, data__batch_size=4, teacher__preset="tiny", optim__teacher__lr=1e-3,
                  ema__start_step=1, flow__cond_dropout=0.25, run__export_on_finish="false")
    states = {}
    for n in (1, 2):
        out = str(tmp_path / f"acc{n}")
        assert run("teacher", None, *common, *sets(optim__accumulation=n), *quiet(out, STEPS)) == 0
        states[n] = load_checkpoint(checkpoint_path(out, STEPS))["nets"]["teacher"]
    for part in ("model", "ema"):
        a, b = states[1][part], states[2][part]
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= ATOL
    assert states[1]["updates"] == states[2]["updates"] == STEPS


def test_two_fsdp_ranks_with_accumulation_match_one_process_with_the_whole_batch(tmp_path):
    """FSDP reduce-scatters each micro-batch's gradients; they must add up to the batch-4 update."""
    data = latents(str(tmp_path / "latents"), count=8)
    common = sets(data__path=data, data__batch_size=4, teacher__preset="tiny", optim__teacher__lr=1e-3,
                  ema__start_step=1, flow__cond_dropout=0.25, run__export_on_finish="false")
    one = str(tmp_path / "one")
    assert run("teacher", None, *common, *quiet(one, STEPS)) == 0
    two = str(tmp_path / "two")
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node", "2", "-m", "training", "teacher", *common,
           *sets(optim__accumulation=2, distributed__strategy="fsdp"), *quiet(two, STEPS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    a = load_checkpoint(checkpoint_path(one, STEPS))["nets"]["teacher"]
    b = load_checkpoint(checkpoint_path(two, STEPS))["nets"]["teacher"]
    for part in ("model", "ema"):
        assert max((a[part][k] - b[part][k]).abs().max().item() for k in a[part]) <= ATOL
    norms = [[r["teacher/grad_norm"] for r in read_metrics(os.path.join(d, "metrics.jsonl")) if "teacher/grad_norm" in r]
             for d in (one, two)]
    assert len(norms[0]) == STEPS and norms[1] == pytest.approx(norms[0], rel=1e-5)  # a missing 1/N would show

"""The learning-rate schedule of each network: linear warmup, then constant or a cosine down to
lr·final_lr_ratio over `cosine_updates` updates, then held; what the trainer logs and resumes with."""
from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest

from training.config import AdamWConfig
from training.optim import lr_at

from _training_helpers import _one_thread, latents, quiet, run, sets  # noqa: F401


def test_warmup_then_constant_by_default():
    cfg = AdamWConfig(lr=1e-3, warmup_steps=4)
    assert [lr_at(cfg, u) for u in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lr_at(AdamWConfig(lr=1e-3), 10**6) == 1e-3


def test_cosine_runs_from_lr_to_the_final_ratio_after_the_warmup_then_holds():
    cfg = AdamWConfig(lr=2e-3, warmup_steps=10, cosine_updates=100, final_lr_ratio=0.1)
    assert lr_at(cfg, 9) == pytest.approx(2e-3)                     # the warmup's last update: the full lr
    assert lr_at(cfg, 10) == pytest.approx(2e-3)                    # the cosine's first
    assert lr_at(cfg, 60) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))  # half way: the mean of both ends
    assert lr_at(cfg, 110) == pytest.approx(2e-4) and lr_at(cfg, 10**6) == pytest.approx(2e-4)
    values = [lr_at(cfg, u) for u in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))          # never rises
    to_zero = dataclasses.replace(cfg, final_lr_ratio=0.0)
    assert lr_at(to_zero, 35) == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_the_trainer_logs_the_scheduled_lr_and_a_resumed_run_continues_it(tmp_path):
    data = latents(str(tmp_path / "data"))
    schedule = sets(optim__teacher__lr=1e-3, optim__teacher__warmup_steps=2, optim__teacher__cosine_updates=4,
                    optim__teacher__final_lr_ratio=0.25)
    common = sets(data__path=data, data__batch_size=2, teacher__preset="tiny", ema__start_step=1) + schedule
    out = str(tmp_path / "run")
    assert run("teacher", None, *common, *quiet(out, 4), *sets(run__save_every=2)) == 0
    assert run("teacher", None, *common, *quiet(out, 8), *sets(run__save_every=2)) == 0  # resumes from step 4
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    logged = {r["step"]: r["teacher/lr"] for r in rows}
    cfg = AdamWConfig(lr=1e-3, warmup_steps=2, cosine_updates=4, final_lr_ratio=0.25)
    assert sorted(logged) == list(range(1, 9))
    for step, lr in logged.items():
        assert lr == pytest.approx(lr_at(cfg, step - 1)), step
    assert logged[8] == pytest.approx(2.5e-4) and logged[2] == pytest.approx(1e-3)

"""Exact resume: 2N steps == N steps + save + resume + N steps, bit for bit on CPU (every parameter, EMA,
optimiser state, RNG state and the metrics); the NaN/inf guard skips an update and logs it."""
from __future__ import annotations

import os

import pytest
import torch

from training.checkpoint import checkpoint_path, load_checkpoint
from training.commands import teacher as teacher_cmd
from training.metrics import read_metrics

from _training_helpers import _one_thread, latents, prompt_file, quiet, run, sets, tiny_teacher  # noqa: F401


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_assets")
    return {"teacher": tiny_teacher(str(root / "teacher.safetensors")), "prompts": prompt_file(str(root / "p.txt")),
            "latents": latents(str(root / "latents"))}


def distill_args(assets, command: str) -> list[str]:
    common = dict(data__kind="prompts", data__path=assets["prompts"], data__batch_size=2, data__latent_shape="[3,4,4]",
                  text__max_tokens=8, teacher__init=assets["teacher"], dmd__student_every=2, ema__start_step=1,
                  ema__decay=0.5, optim__student__lr=1e-3, optim__critic__lr=1e-3, grid__step_counts="[4,2]",
                  run__probe_every=1, run__save_every=100)
    if command == "salt-ar":
        common.update(student__causal="true", ar__chunk_frames=1, ar__cache="{kind: window, window_frames: 1}",
                      ar__cache_step_counts="[4,2]", ar__fa_layers="[1]", ar__fa_high_steps=4)
    return sets(**common)


def teacher_args(assets) -> list[str]:
    return sets(data__path=assets["latents"], data__batch_size=2, teacher__preset="tiny", ema__start_step=1,
                optim__teacher__lr=1e-3, run__save_every=100, flow__cond_dropout=0.5)


def compare_states(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for name in a["nets"]:
        na, nb = a["nets"][name], b["nets"][name]
        for k in na["model"]:
            assert torch.equal(na["model"][k], nb["model"][k]), f"{name} parameter {k}"
        if na["ema"] is not None:
            for k in na["ema"]:
                assert torch.equal(na["ema"][k], nb["ema"][k]), f"{name} EMA {k}"
        sa, sb = na["optimizer"]["state"], nb["optimizer"]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for k in sa[i]:
                assert torch.equal(sa[i][k], sb[i][k]), f"{name} optimizer state {i}.{k}"
        assert na["updates"] == nb["updates"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def metrics_without_time(path: str) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in read_metrics(path)]


@pytest.mark.parametrize("command", ["teacher", "sc-dmd", "salt-ar"])
def test_resume_equals_uninterrupted_run(tmp_path, assets, command):
    args = teacher_args(assets) if command == "teacher" else distill_args(assets, command)
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert run(command, None, *args, *quiet(straight, 4)) == 0
    assert run(command, None, *args, *quiet(split, 2)) == 0
    assert run(command, None, *args, *quiet(split, 4)) == 0  # resumes from step 2 (run.resume: auto)
    compare_states(load_checkpoint(checkpoint_path(straight, 4)), load_checkpoint(checkpoint_path(split, 4)))
    a, b = metrics_without_time(os.path.join(straight, "metrics.jsonl")), metrics_without_time(
        os.path.join(split, "metrics.jsonl"))
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert a == b


def test_nan_guard_skips_the_update_and_logs_it(tmp_path, assets, monkeypatch):
    original = teacher_cmd.TeacherTask.loss

    def poisoned(self, phase, batch, step):
        loss, stats = original(self, phase, batch, step)
        return (loss * float("nan") if step == 1 else loss), stats

    monkeypatch.setattr(teacher_cmd.TeacherTask, "loss", poisoned)
    out = str(tmp_path / "run")
    assert run("teacher", None, *teacher_args(assets), *quiet(out, 3), *sets(run__save_every=1, run__keep_last=5)) == 0
    events = [r for r in read_metrics(os.path.join(out, "metrics.jsonl")) if r.get("event")]
    assert events == [{"step": 2, "event": "skipped_update", "network": "teacher", "loss": "nan",
                       "grad_norm": "nan"}]
    s1, s2, s3 = (load_checkpoint(checkpoint_path(out, k)) for k in (1, 2, 3))
    assert s2["nets"]["teacher"]["updates"] == 1 and s3["nets"]["teacher"]["updates"] == 2
    for k, v in s1["nets"]["teacher"]["model"].items():
        assert torch.equal(v, s2["nets"]["teacher"]["model"][k]), k  # the poisoned step changed nothing
        assert torch.isfinite(s3["nets"]["teacher"]["model"][k]).all()
    assert s3["guard"]["skipped"] == 1


def test_consecutive_skips_abort_the_run(tmp_path, assets, monkeypatch, capsys):
    original = teacher_cmd.TeacherTask.loss
    monkeypatch.setattr(teacher_cmd.TeacherTask, "loss",
                        lambda self, *a: (lambda ls: (ls[0] * float("inf"), ls[1]))(original(self, *a)))
    code = run("teacher", None, *teacher_args(assets), *quiet(str(tmp_path / "r"), 5),
               *sets(run__max_consecutive_skips=2))
    assert code == 2 and "error: 2 consecutive updates were skipped" in capsys.readouterr().err


def test_resume_test_is_not_vacuous(tmp_path, assets):
    """The runs compared above really train: parameters, EMA and critic move between steps 2 and 4."""
    out = str(tmp_path / "r")
    assert run("sc-dmd", None, *distill_args(assets, "sc-dmd"), *quiet(out, 4), *sets(run__save_every=2)) == 0
    s2, s4 = load_checkpoint(checkpoint_path(out, 2)), load_checkpoint(checkpoint_path(out, 4))
    for name, part in (("student", "model"), ("student", "ema"), ("critic", "model")):
        a, b = s2["nets"][name][part], s4["nets"][name][part]
        assert any(not torch.equal(a[k], b[k]) for k in a), f"{name} {part} did not change"


def test_phases_that_skip_steps_still_reach_the_log(tmp_path, assets):
    """With the student updated every 2nd step (steps 0, 2) and a row logged after steps 2 and 4, each row holds the
    student's last stats of its interval next to the critic's, not only the phase that ran on the logged step."""
    out = str(tmp_path / "run")
    assert run("sc-dmd", None, *distill_args(assets, "sc-dmd"), *quiet(out, 4), *sets(run__log_every=2)) == 0
    rows = [r for r in read_metrics(os.path.join(out, "metrics.jsonl")) if not r.get("event")]
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert "student/loss" in r and "critic/loss" in r, sorted(r)
        assert "student/sc_loss" in r, sorted(r)

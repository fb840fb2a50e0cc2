"""Trainer checkpoints: atomic (a crash or SIGKILL mid-save leaves the previous checkpoint intact),
weights_only-loadable, stale temps cleaned at the next start, resume after a kill still exact."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from training.checkpoint import (TrainerCheckpointError, checkpoint_dir, checkpoint_path, list_checkpoints,
                                 load_checkpoint, save_checkpoint)

from training.cli import main

from _training_helpers import _one_thread, latents, quiet, run, sets  # noqa: F401


def teacher_args(data: str) -> list[str]:
    return sets(data__path=data, data__batch_size=2, teacher__preset="tiny", optim__teacher__lr=1e-3, ema__start_step=1)


def test_writer_failing_midway_keeps_the_old_checkpoint_and_no_temp(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, {"format": "salt-trainer-v1", "step": 1, "w": torch.ones(3)})

    def broken(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half written")  # f: the open temp file
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": "salt-trainer-v1", "step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_sigkill_during_save_keeps_the_previous_checkpoint_and_resume_is_exact(tmp_path):
    data = latents(str(tmp_path / "latents"))
    out, ref = str(tmp_path / "killed"), str(tmp_path / "straight")
    argv = ["teacher", *teacher_args(data), *quiet(out, 3), *sets(run__save_every=1, run__keep_last=5)]
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        from training.cli import main
        torch.set_num_threads(1)
        real, calls = torch.save, []
        def dying(obj, f, *a, **k):
            calls.append(f)
            if len(calls) == 2:  # the second checkpoint: half a file, then SIGKILL (no cleanup possible)
                f.write(b"PK\\x03\\x04 half written")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, f, *a, **k)
        torch.save = dying
        sys.exit(main({argv!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    folder = checkpoint_dir(out)
    assert [s for s, _ in list_checkpoints(folder)] == [1]
    temps = [n for n in os.listdir(folder) if n.endswith(".tmp.pt")]
    assert len(temps) == 1, (os.listdir(folder), proc.stderr[-2000:])
    assert len(temps) == 1 and temps[0].startswith(".step-00000002.")
    assert load_checkpoint(checkpoint_path(out, 1))["step"] == 1  # the previous checkpoint is intact

    # the next start removes the stale temp and resumes from step 1; the result equals an unbroken run
    assert main(argv) == 0
    assert not [n for n in os.listdir(folder) if ".tmp" in n]
    assert run("teacher", None, *teacher_args(data), *quiet(ref, 3)) == 0
    a, b = load_checkpoint(checkpoint_path(out, 3)), load_checkpoint(checkpoint_path(ref, 3))
    for k, v in a["nets"]["teacher"]["model"].items():
        assert torch.equal(v, b["nets"]["teacher"]["model"][k]), k


def test_checkpoints_load_with_weights_only_and_old_ones_are_pruned(tmp_path):
    data = latents(str(tmp_path / "latents"))
    out = str(tmp_path / "r")
    assert run("teacher", None, *teacher_args(data), *quiet(out, 3), *sets(run__save_every=1, run__keep_last=2)) == 0
    assert [s for s, _ in list_checkpoints(checkpoint_dir(out))] == [2, 3]
    state = torch.load(checkpoint_path(out, 3), weights_only=True)
    assert state["format"] == "salt-trainer-v1" and state["command"] == "teacher" and state["step"] == 3
    assert set(state["rng"]) == {"torch", "cuda", "python", "numpy"}
    assert state["data"] == {"position": 6, "global_batch": 2}


def test_a_damaged_or_foreign_checkpoint_gives_one_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(TrainerCheckpointError, match="cannot read trainer checkpoint: .*bad.pt"):
        load_checkpoint(str(bad))
    other = tmp_path / "weights.pt"
    torch.save({"generator": {"w": torch.ones(1)}}, other)
    with pytest.raises(TrainerCheckpointError, match="not a salt trainer checkpoint"):
        load_checkpoint(str(other))


class _NotAllowed:  # a global outside torch's weights-only allow-list
    pass


@pytest.mark.parametrize("content", ["pickled object", "garbage"])
def test_a_refused_checkpoint_never_suggests_the_unsafe_load(tmp_path, content):
    path = tmp_path / "state.pt"
    if content == "garbage":
        path.write_bytes(b"garbage" * 10)
    else:
        torch.save({"format": "salt-trainer-v1", "x": _NotAllowed()}, path)
    with pytest.raises(TrainerCheckpointError) as caught:
        load_checkpoint(str(path))
    text = str(caught.value)
    assert "state.pt" in text and "weights_only" not in text and "safe_globals" not in text

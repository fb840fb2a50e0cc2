"""`python -m training` failures a user can cause: each is one `error:` line naming the key or file (exit status 2,
no traceback), found before any compute where it can be, and nothing on disk is lost or half written."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import typing

import pytest

from training import checkpoint as checkpoint_module
from training import trainer as trainer_module
from training.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint
from training.config import TrainConfig

from _training_helpers import _one_thread, latents, quiet, run, sets, tiny_teacher  # noqa: F401
from test_training_errors import error_of, no_compute  # noqa: F401


def one_error_line(capsys, code: int, *argv) -> str:
    """Run; check the status and that stderr ends in exactly one `error:` line without a traceback."""
    assert run(*argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    return last


@pytest.mark.parametrize("override, message", [
    ("optim.student.lr=-1e-3", "optim.student.lr must be > 0, got -0.001"),
    ("optim.critic.betas=[0.9, 1.0]", "optim.critic.betas[1] must be in [0, 1), got 1.0"),
    ("optim.student.eps=0", "optim.student.eps must be > 0, got 0.0"),
    ("optim.student.weight_decay=-0.1", "optim.student.weight_decay must be >= 0, got -0.1"),
    ("run.steps=0", "run.steps must be >= 1, got 0"),
    ("run.keep_last=0", "run.keep_last must be >= 1, got 0"),
    ("ema.decay=1.5", "ema.decay must be in [0, 1], got 1.5"),
    ("grid.timesteps=[1000, 0]", "grid.timesteps[1] must be in (0, 1000], got 0.0"),
    ("dmd.exit_step=-1", "dmd.exit_step must be >= 0, got -1"),
    ("data.batch_size=0", "data.batch_size must be >= 1, got 0"),
    ("flow.cond_dropout=1", "flow.cond_dropout must be in [0, 1), got 1.0"),
])
def test_numbers_out_of_range_name_the_key_and_the_allowed_range(capsys, no_compute, override, message):
    assert one_error_line(capsys, 2, "dmd", None, "--set", override) == f"error: <defaults> + --set: {message}"


def test_a_yaml_file_with_a_bad_number_is_named(tmp_path, capsys, no_compute):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  student: {lr: -1.0e-3}\n")
    assert one_error_line(capsys, 2, "dmd", str(cfg)) == f"error: {cfg}: optim.student.lr must be > 0, got -0.001"


NUMBERS_WITHOUT_RANGE = {"run.seed", "vae.clips.seed", "textenc.seed",  # any integer seeds the streams
                         "ar.cache.window_frames", "ar.cache.sink_frames", "ar.cache.max_frames",
                         "ar.cache.context_t"}  # CachePolicy checks its own fields


def _number_fields(cls=TrainConfig, prefix=""):
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _number_fields(tp, f"{prefix}{f.name}.")
            continue
        names = {getattr(a, "__name__", "") for a in (tp, *typing.get_args(tp))}
        if names & {"int", "float"}:
            yield f"{prefix}{f.name}", f, cls


def test_every_numeric_option_has_an_allowed_range_that_holds_its_default():
    unbounded = []
    for key, f, cls in _number_fields():
        bounds = f.metadata.get("bounds")
        if bounds is None:
            unbounded.append(key)
            continue
        default = getattr(cls(), f.name)
        for v in default if isinstance(default, tuple) else [default]:
            assert isinstance(v, str) or bounds.allows(v), f"{key}: default {v} outside {bounds}"
    assert set(unbounded) == NUMBERS_WITHOUT_RANGE


@pytest.fixture
def dataset(tmp_path):
    return latents(str(tmp_path / "lat"))


def teacher(data: str, out: str, steps: int = 1, *more: str) -> list[str]:
    return ["teacher", None, *sets(data__path=data, teacher__preset="tiny", data__batch_size=2), *quiet(out, steps),
            *more]


def damage_shard(data: str) -> str:
    path = os.path.join(data, "shard-00001.safetensors")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 1000)  # the tail of the tensor data is gone
    return path


def break_index(data: str) -> str:
    path = os.path.join(data, "index.json")
    with open(path, "w") as f:
        f.write('{"format": "salt-dataset-v1", "kind": ')
    return path


def miscount_index(data: str) -> str:
    path = os.path.join(data, "index.json")
    index = json.load(open(path))
    index["shards"][0]["count"] += 1
    with open(path, "w") as f:
        json.dump(index, f)
    return os.path.join(data, index["shards"][0]["file"])


@pytest.mark.parametrize("damage, message", [
    (damage_shard, "the file is truncated"),
    (break_index, "not valid JSON"),
    (miscount_index, "lists 5 samples"),
])
def test_damaged_data_is_one_line_naming_the_file_before_any_compute(tmp_path, capsys, dataset, no_compute,
                                                                     damage, message):
    path = damage(dataset)
    out = str(tmp_path / "run")
    line = one_error_line(capsys, 2, *teacher(dataset, out))
    assert path in line and message in line
    assert not os.path.exists(out)  # nothing was written


def test_a_prompt_file_that_is_not_utf8_is_named(tmp_path, capsys, no_compute):
    prompts = tmp_path / "p.txt"
    prompts.write_bytes(b"a red circle\n\xff\xfe broken\n")
    line = one_error_line(capsys, 2, "dmd", None, *sets(data__kind="prompts", data__path=str(prompts),
                                                       data__latent_shape="[3,4,4]",
                                                       teacher__init=tiny_teacher(str(tmp_path / "t.safetensors"))))
    assert f"{prompts}: not UTF-8 text" in line


class FullAfter:
    """An open file that takes `room` bytes, then fails every write as a full disk does."""

    def __init__(self, f, room: int):
        self._f, self.room = f, room

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, dataset, monkeypatch):
    real, opened = checkpoint_module.open_for_writing, []

    def disk_fills_up(path: str):  # the writer seam: the second checkpoint hits a full disk
        opened.append(path)
        return FullAfter(real(path), 10_000) if len(opened) == 2 else real(path)

    monkeypatch.setattr(checkpoint_module, "open_for_writing", disk_fills_up)
    out = str(tmp_path / "run")
    line = one_error_line(capsys, 2, *teacher(dataset, out, 3, *sets(run__save_every=1)))
    assert line == f"error: no space left on device while writing {os.path.abspath(checkpoint_dir(out))}" \
                   "/step-00000002.pt"
    assert os.listdir(checkpoint_dir(out)) == ["step-00000001.pt"]  # no temp left; the previous one intact
    assert load_checkpoint(list_checkpoints(checkpoint_dir(out))[0][1])["step"] == 1


def test_an_output_folder_under_a_file_is_one_line(tmp_path, capsys, dataset):
    (tmp_path / "file").write_text("x")
    line = one_error_line(capsys, 2, *teacher(dataset, str(tmp_path / "file" / "run")))
    assert str(tmp_path / "file") in line and "Not a directory" in line


def test_an_interrupted_run_exits_cleanly_with_status_130(tmp_path, capsys, dataset, monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    monkeypatch.setattr(trainer_module.Trainer, "fit", interrupted)
    line = one_error_line(capsys, 130, *teacher(dataset, str(tmp_path / "run")))
    assert line.startswith("error: terminated (SIGTERM); ") and "resume" in line

"""Bad input gives one clear `error:` line (exit status 2) before any compute: unknown config keys (with
the closest suggestion), missing data paths, incompatible teacher/student shapes, a resume checkpoint
from another config."""
from __future__ import annotations

import dataclasses

import pytest

from salt_core.config import dit_preset
from training import trainer as trainer_module

from _training_helpers import _one_thread, latents, prompt_file, quiet, run, sets, tiny_teacher  # noqa: F401


@pytest.fixture
def no_compute(monkeypatch):
    """Fail loudly if a trainer is ever built (the error must come first)."""
    def refuse(*a, **k):
        raise AssertionError("compute started before the input was checked")
    monkeypatch.setattr(trainer_module.Trainer, "__init__", refuse)


def error_of(capsys, *argv) -> str:
    assert run(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("error: "), err
    return "\n".join(err)


def test_unknown_yaml_key_names_it_and_suggests_the_closest(tmp_path, capsys, no_compute):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  studnet: {lr: 1.0e-4}\n")
    msg = error_of(capsys, "teacher", str(cfg))
    assert "unknown config key 'optim.studnet'" in msg and "did you mean 'student'" in msg
    cfg.write_text("run: {stpes: 3}\n")
    assert "did you mean 'steps'" in error_of(capsys, "teacher", str(cfg))


def test_unknown_override_key_and_bad_types_are_named(capsys, no_compute):
    msg = error_of(capsys, "dmd", None, "--set", "dmd.guidance=2")
    assert "unknown config key 'dmd.guidance'" in msg and "did you mean 'dmd.guidance_scale'" in msg
    assert "run.steps must be an integer, got 'ten'" in error_of(capsys, "dmd", None, "--set", "run.steps=ten")
    msg = error_of(capsys, "dmd", None, "--set", "grid.transition=renois")
    assert "one of ['renoise', 'ode']" in msg and "did you mean 'renoise'" in msg
    assert "ar.cache" in error_of(capsys, "salt-ar", None, "--set", "ar.cache.kind=window")


def test_missing_data_paths_are_reported_before_compute(tmp_path, capsys, no_compute):
    teacher = tiny_teacher(str(tmp_path / "t.safetensors"))
    msg = error_of(capsys, "teacher", None, *sets(teacher__preset="tiny", data__path=str(tmp_path / "nope")))
    assert "data.path" in msg and "nope: dataset folder not found" in msg
    msg = error_of(capsys, "dmd", None, *sets(teacher__init=teacher, data__kind="prompts",
                                             data__path=str(tmp_path / "prompts.txt"), data__latent_shape="[3,4,4]"))
    assert "prompts.txt: prompt file not found" in msg
    msg = error_of(capsys, "dmd", None, *sets(teacher__init=str(tmp_path / "missing.safetensors")))
    assert "missing.safetensors: checkpoint not found" in msg
    assert "data.path is empty" in error_of(capsys, "teacher", None, *sets(teacher__preset="tiny"))


def test_incompatible_teacher_and_student_shapes_are_reported_before_compute(tmp_path, capsys, no_compute):
    odd = dataclasses.replace(dit_preset("tiny"), in_dim=8, out_dim=8)
    teacher = tiny_teacher(str(tmp_path / "t8.safetensors"), config=odd)
    prompts = prompt_file(str(tmp_path / "p.txt"))
    base = sets(teacher__init=teacher, data__kind="prompts", data__path=prompts, data__latent_shape="[3,4,4]")
    msg = error_of(capsys, "sc-dmd", None, *base, *sets(student__init="", student__preset="tiny"))
    assert "incompatible networks: in_dim differs (teacher=8, student=16, critic=8)" in msg
    msg = error_of(capsys, "dmd", None, *base, *sets(student__preset="tiny-wide"))
    assert "student.preset 'tiny-wide' disagrees with the teacher" in msg
    data = latents(str(tmp_path / "lat"))  # 16-channel latents for an 8-channel model
    msg = error_of(capsys, "teacher", None, *sets(teacher__init=teacher, data__path=data))
    assert "latents have 16 channels, the model expects in_dim=8" in msg
    good = tiny_teacher(str(tmp_path / "t16.safetensors"))
    msg = error_of(capsys, "salt-ar", None, *base,
                   *sets(teacher__init=good, student__causal="true", ar__chunk_frames=2))
    assert "3 latent frames are not a multiple of ar.chunk_frames=2" in msg


def test_resume_from_another_config_is_refused_with_the_differences(tmp_path, capsys):
    data = latents(str(tmp_path / "lat"))
    out = str(tmp_path / "run")
    args = sets(teacher__preset="tiny", data__path=data, data__batch_size=2)
    assert run("teacher", None, *args, *quiet(out, 1)) == 0
    capsys.readouterr()
    # more steps, other logging: allowed (resume-safe keys)
    assert run("teacher", None, *args, *quiet(out, 2), *sets(run__log_every=2)) == 0
    capsys.readouterr()
    msg = error_of(capsys, "teacher", None, *args, *quiet(out, 3), *sets(optim__teacher__lr=0.5))
    assert "trained with another config" in msg and "optim.teacher.lr: 0.0001 -> 0.5" in msg
    msg = error_of(capsys, "ode-init", None, *sets(run__resume=out + "/checkpoints/step-00000002.pt"))
    assert "written by `teacher`, not `ode-init`" in msg
    msg = error_of(capsys, "teacher", None, *args, *quiet(out, 3), *sets(run__resume="never"))
    assert "run.resume is 'never' but" in msg and "step-00000002.pt exists" in msg


def test_a_run_saved_before_an_option_existed_resumes_while_the_option_keeps_its_default():
    """An option added since the checkpoint was written is no difference at its default (which keeps the old
    behaviour); set to anything else it is named."""
    import json

    from training.checkpoint import check_resumable
    from training.config import TrainConfig
    from training.config_load import config_hash, config_to_dict
    from training.config_load import ConfigError

    now = config_to_dict(TrainConfig())
    old = json.loads(json.dumps(now))
    del old["vae"]["temporally_local"]  # the option did not exist when the run was saved
    state = {"command": "vae", "config_json": json.dumps(old), "config_hash": "0" * 16}
    check_resumable(state, "ckpt.pt", "vae", config_hash(TrainConfig(), "vae"), now)
    changed = dataclasses.replace(TrainConfig(), vae=dataclasses.replace(TrainConfig().vae, temporally_local=True))
    with pytest.raises(ConfigError, match=r"vae.temporally_local: '<absent>' -> True"):
        check_resumable(state, "ckpt.pt", "vae", config_hash(changed, "vae"), config_to_dict(changed))

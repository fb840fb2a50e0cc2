"""The config schema: YAML + --set overrides with type checks, documented options, the resume hash, and
example configs that all load."""
from __future__ import annotations

import glob
import os

import pytest

from training.cli import config_doc, main
from training.config import COMMANDS
from training.config_load import ConfigError, all_keys, config_hash, iter_options, load_config

from _training_helpers import configs_dir


def test_defaults_follow_the_self_forcing_recipe():
    c = load_config()
    assert (c.optim.student.lr, c.optim.critic.lr) == (2e-6, 4e-7)
    assert c.optim.student.betas == (0.0, 0.999) and c.optim.student.grad_clip == 10.0
    assert (c.ema.decay, c.ema.start_step) == (0.99, 200)
    assert c.dmd.student_every == 5 and c.dmd.guidance_scale == 3.0 and (c.dmd.t_min, c.dmd.t_max) == (20.0, 980.0)
    assert c.grid.step_counts == (8, 4, 2) and c.grid.timesteps == (1000.0, 750.0, 500.0, 250.0)
    assert c.grid.shift == 5.0 and c.grid.transition == "renoise"
    assert (c.sc.stop_grad, c.sc.normalise) == ("composed", "displacement")


def test_overrides_are_type_checked_and_sections_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  student: {lr: 2e-5}\nar:\n  cache: {kind: window, window_frames: 6}\n")
    c = load_config(str(path), ["optim.student.betas=[0.9, 0.99]", "ar.cache.sink_frames=3",
                                "ar.cache.kind=sink_window", "run.steps=7", "grid.step_counts=[4, 2]"])
    assert c.optim.student.lr == 2e-5 and c.optim.student.betas == (0.9, 0.99)
    assert c.optim.student.grad_clip == 10.0  # untouched sibling keeps its default
    assert (c.ar.cache.kind, c.ar.cache.window_frames, c.ar.cache.sink_frames) == ("sink_window", 6, 3)
    assert c.run.steps == 7 and c.grid.step_counts == (4, 2)
    for bad, msg in [("run.steps=1.5", "must be an integer"), ("run.progress=maybe", "true or false"),
                     ("optim.student.betas=[0.9]", "a list of 2 values"), ("run=3", "must be a mapping"),
                     ("run.steps.x=1", "is an option, not a section"), ("nokey", "expected key=value")]:
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad])


def test_every_option_is_documented_in_the_schema_and_in_docs():
    docs_path = os.path.join(os.path.dirname(configs_dir()), "..", "docs", "training.md")
    with open(docs_path, encoding="utf-8") as f:
        docs = f.read()
    for key, _, _, doc in iter_options():
        assert doc, f"{key} has no documentation"
        assert f"`{key}`" in docs, f"{key} is missing from docs/training.md"
    table = config_doc()
    assert all(f"`{k}`" in table for k in all_keys())
    assert table in docs, "docs/training.md option table is stale: paste `python -m training config-doc`"


def test_config_hash_ignores_resume_safe_keys_only():
    base = load_config()
    h = config_hash(base, "dmd")
    assert config_hash(load_config(None, ["run.steps=9", "run.log_every=3", "run.output_dir=x", "data.path=y"]),
                       "dmd") == h
    assert config_hash(load_config(None, ["optim.critic.lr=1e-3"]), "dmd") != h
    assert config_hash(base, "sc-dmd") != h


def test_every_example_config_loads_and_every_command_has_one():
    files = sorted(glob.glob(os.path.join(configs_dir(), "**", "*.yaml"), recursive=True))  # world/ too
    names = {os.path.basename(f)[:-5] for f in files}
    for command in COMMANDS:
        assert any(n == command or n.startswith(command + "-") for n in names), f"no example config for {command}"
    for f in files:
        load_config(f)


def test_show_config_prints_the_resolved_config(capsys):
    assert main(["show-config", "dmd", "--set", "dmd.student_every=3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# dmd: config hash ") and "student_every: 3" in out

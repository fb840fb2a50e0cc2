"""The whole tiny training pipeline, each command on its example config shrunk by --set:
build-latents -> teacher (+AR) -> ode-pairs -> ode-init (+AR) -> dmd, sc-dmd, salt-ar -> export.

Used by tests/test_training_commands.py (which checks what the commands wrote) and by
benchmarks/perf/smoke_timings.py (which times them). No pytest here.
"""
from __future__ import annotations

import os

from _training_helpers import configs_dir, prompt_file, quiet, run, sets

# Run folders of the training commands, with whether the model they export is causal.
RUN_DIRS = {"teacher": False, "teacher_ar": True, "ode_init": False, "ode_init_ar": True,
            "dmd": False, "sc_dmd": False, "salt_ar": True}


def config(name: str) -> str:
    return os.path.join(configs_dir(), f"{name}.yaml")


def steps(root: str) -> list[tuple[str, str, str, list[str]]]:
    """(label, command, example config, arguments) in pipeline order, writing under `root`."""
    p = lambda *parts: os.path.join(root, *parts)  # noqa: E731
    prompts = prompt_file(p("prompts.txt"))
    train = dict(run__save_every=2, run__probe_every=2)
    teacher = p("teacher", "model.safetensors")
    common = dict(teacher__init=teacher, **train)
    distill = dict(data__path=prompts, dmd__student_every=2, **common)
    return [
        ("build-latents (random)", "build-latents", "build-latents-random",
         sets(build__output=p("latents"), build__limit=8)),
        ("teacher", "teacher", "teacher", quiet(p("teacher"), 2) + sets(data__path=p("latents"), **train)),
        ("teacher (AR)", "teacher", "teacher-ar", quiet(p("teacher_ar"), 2) + sets(data__path=p("latents"), **train)),
        ("ode-pairs", "ode-pairs", "ode-pairs",
         sets(run__output_dir=p("ode"), data__path=prompts, teacher__init=teacher, ode__output=p("pairs"),
              ode__num_samples=4, ode__teacher_steps=8)),
        ("ode-init", "ode-init", "ode-init", quiet(p("ode_init"), 2) + sets(data__path=p("pairs"), **common)),
        ("ode-init (AR)", "ode-init", "ode-init-ar", quiet(p("ode_init_ar"), 2) + sets(data__path=p("pairs"), **common)),
        ("dmd", "dmd", "dmd", quiet(p("dmd"), 2) + sets(student__init=p("ode_init", "model.safetensors"), **distill)),
        ("sc-dmd", "sc-dmd", "sc-dmd",
         quiet(p("sc_dmd"), 2) + sets(student__init=p("ode_init", "model.safetensors"), grid__step_counts="[4,2]",
                                      **distill)),
        ("salt-ar", "salt-ar", "salt-ar",
         quiet(p("salt_ar"), 2) + sets(student__init=p("ode_init_ar", "model.safetensors"), grid__step_counts="[4,2]",
                                       ar__cache_step_counts="[4,2]", ar__fa_high_steps=4, **distill)),
        ("export", "export", "export",
         sets(export__checkpoint=p("sc_dmd"), export__output=p("exported.safetensors"))),
    ]


def run_step(label: str, command: str, name: str, args: list[str]) -> None:
    code = run(command, config(name), *args)
    if code != 0:
        raise AssertionError(f"{label}: `python -m training {command}` exited with {code}")


def run_pipeline(root: str) -> None:
    """Run every step in order; each must exit 0."""
    for step in steps(root):
        run_step(*step)

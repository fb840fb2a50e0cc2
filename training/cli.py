"""Command line: `python -m training <command> --config <yaml> [--set key=value ...]`.

Commands: teacher, ode-pairs, ode-init, dmd, sc-dmd, salt-ar, export, build-latents, vae, text-encoder;
plus `show-config <command>` (resolved YAML and resume hash), `config-doc` (every option, as Markdown) and
`plan` (per-GPU memory of a distillation run, from the config alone).
Configuration problems print one `error:` line and exit with status 2 before any compute; so do the other
expected failures (damaged data or checkpoints, a full disk, an unwritable folder, a run that aborted itself).
Ctrl+C or SIGTERM stops the run cleanly (no half-written file; the checkpoints on disk stay valid) with status 130.
Set SALT_TRACEBACK=1 to see the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Optional, Sequence

from salt_core.atomic import WriteError, sigterm_as_interrupt

from .config import COMMANDS
from .config_load import ConfigError, config_hash, dump_yaml, iter_options, load_config, type_name
from .trainer import TrainingAborted

# command -> module in training.commands exposing run(cfg, command) -> dict
MODULES = {
    "teacher": "teacher", "ode-pairs": "ode_pairs", "ode-init": "ode_init", "dmd": "dmd", "sc-dmd": "dmd",
    "salt-ar": "salt_ar", "export": "export", "build-latents": "build_latents", "vae": "vae",
    "text-encoder": "text_encoder", "text-cache": "text_cache",
}
HELP = {
    "teacher": "flow-matching pre-training of a bidirectional or AR (teacher-forced) model on latent data",
    "ode-pairs": "sample teacher ODE trajectories -> (noise, states on the student grid, x0) on disk",
    "ode-init": "initialise a student (causal or bidirectional) by regression on ODE pairs",
    "dmd": "DMD distillation (baseline)",
    "sc-dmd": "Salt SC-DMD distillation of a bidirectional student",
    "salt-ar": "Salt for AR students: SC-DMD + cache-distribution-aware training",
    "export": "trainer checkpoint (EMA student) -> .safetensors the nodes and salt_core load",
    "build-latents": "video clips -> VAE latents + text embeddings on disk",
    "vae": "train the tiny video VAE on synthetic-world clips (L1 + SSIM + KL), with latent statistics",
    "text-encoder": "train the tiny text encoder on synthetic-world prompts (attribute heads, paraphrases)",
    "text-cache": "encode the run's prompts and negative prompt once with umT5 into a prompt cache",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description="The Salt trainer (see docs/training.md).")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    for name in COMMANDS:
        c = sub.add_parser(name, help=HELP[name], description=HELP[name])
        c.add_argument("--config", "-c", help="YAML config (missing keys take their defaults)")
        c.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                       help="override an option, e.g. --set optim.student.lr=1e-5 (repeatable)")
    s = sub.add_parser("show-config", help="print the resolved config and its resume hash")
    s.add_argument("for_command", choices=COMMANDS)
    s.add_argument("--config", "-c")
    s.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser("config-doc", help="print every config option as a Markdown table")
    m = sub.add_parser("plan", help="per-GPU memory of a distillation run (weights, optimiser, EMA, activations, "
                                    "KV caches) and whether it fits", description="Builds the networks on the meta "
                                    "device (checkpoint headers or presets; no weights read).")
    m.add_argument("--config", "-c")
    m.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE")
    m.add_argument("--gpus", type=int, default=1, help="GPUs (FSDP shards over them when distributed.strategy "
                                                       "is fsdp)")
    m.add_argument("--gpu-memory", default="80GB", help="memory of one GPU, e.g. 80GB, 141GB, 24GiB")
    m.add_argument("--command", dest="for_command", choices=("dmd", "sc-dmd", "salt-ar"),
                   help="the command to plan (default: salt-ar for a causal student, else sc-dmd)")
    m.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda: bf16 autocast per run.precision; cpu: fp32 (what a CPU run keeps)")
    m.add_argument("--offload-teacher", action="store_true", help="keep the frozen teacher's weights on the CPU")
    return p


def config_doc() -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, tp, default, doc in iter_options():
        value = json.dumps(list(default) if isinstance(default, tuple) else default)
        rows.append(f"| `{key}` | {type_name(tp).replace('|', '/')} | `{value}` | {doc.replace('|', '/')} |")
    return "\n".join(rows)


def run_command(command: str, config: Optional[str], overrides: Sequence[str]) -> dict:
    cfg = load_config(config, overrides)
    module = importlib.import_module(f"training.commands.{MODULES[command]}")
    return module.run(cfg, command)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "config-doc":
            print(config_doc())
            return 0
        if args.command == "plan":
            from .plan import Options, parse_memory, plan_memory
            from .plan_report import format_plan

            cfg = load_config(args.config, args.set)
            command = args.for_command or ("salt-ar" if cfg.student.causal else "sc-dmd")
            opts = Options(gpus=args.gpus, gpu_memory=parse_memory(args.gpu_memory), device=args.device,
                           offload_teacher=args.offload_teacher)
            print(format_plan(cfg, plan_memory(cfg, command, opts)))
            return 0
        if args.command == "show-config":
            cfg = load_config(args.config, args.set)
            print(f"# {args.for_command}: config hash {config_hash(cfg, args.for_command)}")
            print(dump_yaml(cfg), end="")
            return 0
        with sigterm_as_interrupt():
            run_command(args.command, args.config, args.set)
        return 0
    except (ConfigError, ValueError, OSError, TrainingAborted) as e:
        # configuration / data / checkpoint / disk problems: one clear line, no internals
        if os.environ.get("SALT_TRACEBACK"):
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if os.environ.get("SALT_TRACEBACK"):
            raise
        why = str(e) or "interrupted"
        print(f"error: {why}; files being written were discarded, finished checkpoints are intact: run the same "
              "command again to resume", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    """The message of an expected failure; OSErrors without our wording get 'path: reason'."""
    if isinstance(e, OSError) and not isinstance(e, WriteError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e)

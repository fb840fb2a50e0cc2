#!/usr/bin/env bash
# Re-run every performance benchmark and rewrite benchmarks/results/*.md (about two hours on 2 shared CPU cores).
# BASELINE (optional): a directory holding the salt_core of an older commit, for before/after columns:
#   git archive <commit> salt_core | tar -x -C "$BASELINE"
# OMP_WAIT_POLICY=PASSIVE: on a shared machine, OpenMP threads that spin-wait for a descheduled peer make
# multi-thread runs 10x slower and meaningless; 1-thread runs are unaffected by the setting.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=()
if [[ -n "${BASELINE:-}" ]]; then base=(--baseline "$BASELINE"); fi
export OMP_WAIT_POLICY=PASSIVE
python benchmarks/perf/dit_vs_diffusers.py --threads 1,2 "${base[@]}"
python benchmarks/perf/dit_profile.py
python benchmarks/perf/compile_check.py
python benchmarks/perf/ar_cache_policies.py --threads 1
python benchmarks/perf/vae_decode.py --threads 1 --sizes "64:3,6,12,24,48;128:3,12,24" "${base[@]}"
python benchmarks/perf/smoke_timings.py --rounds 3
python benchmarks/perf/gpu_stream.py --device cpu  # on a CUDA machine also: --device cuda
python benchmarks/perf/memory_table.py
python benchmarks/perf/vae_tiled.py --part accuracy --threads 1
python benchmarks/perf/vae_tiled.py --part preview --threads 1
python benchmarks/perf/vae_tiled.py --part memory --threads 1  # full-size VAE at 480p/720p: the slow one
unset OMP_WAIT_POLICY  # e2e measures the CLI as users run it, and adds PASSIVE rows itself
python benchmarks/perf/e2e_generate.py --threads 1,2 --passive "${base[@]}"

#!/usr/bin/env bash
# Issue 15's world evidence: the released Salt forms against ours, same seeds and budget (3000 steps, batch 4),
# from the committed bidirectional teacher of the causal-VAE chain (checkpoints/causal-vae-chain: the tiny DiT on
# the stage-3 causal VAE's latents, the chain before issue 16) and the embedded default's text encoder (no runs/
# state needed).
#   AR:            ar-dmd (no SC, no alignment) | ours: SC semigroup | released: SC endpoint (+ TRD) | ours + FA
#   bidirectional: dmd-8 | ours: sc-dmd-8 | released SC endpoint
# Then `python benchmarks/quality/forms.py` judges them all and writes benchmarks/quality/FORMS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=training/configs/world
C=benchmarks/quality/checkpoints/causal-vae-chain
COMMON="--set run.threads=1 --set run.progress=false --set teacher.init=$C/teacher.safetensors --set student.init=$C/teacher.safetensors
        --set text.path=salt_core/assets/default/text_encoder.safetensors"
BIDI="--set run.threads=1 --set run.progress=false --set teacher.init=$C/teacher.safetensors --set text.path=salt_core/assets/default/text_encoder.safetensors"
RELEASED="--set sc.form=endpoint --set sc.weight=0.2 --set sc.step_counts=[8] --set grid.step_probs=[0.4,0.4,0.2]"
run() { local out=$1; shift; [ -f "runs/forms/$out/model.safetensors" ] || python -m training "$@" --set run.output_dir=runs/forms/$out; }

run ar_dmd       salt-ar --config $W/ar-dmd.yaml  $COMMON
run ar_ours_sc   salt-ar --config $W/salt-ar.yaml $COMMON
run ar_rel_sc    salt-ar --config $W/salt-ar.yaml $COMMON $RELEASED --set ar.step_lists=per_rollout
run ar_rel_trd   salt-ar --config $W/salt-ar.yaml $COMMON $RELEASED --set ar.step_lists=per_rollout \
                 --set trd.weight=0.1 --set trd.block=1 --set trd.start_step=600 --set trd.noise_mode=independent
run ar_ours_fa   salt-ar --config $W/salt-ar.yaml $COMMON --set ar.fa_weight=1
run bi_dmd8      dmd     --config $W/dmd-8.yaml    $BIDI
run bi_ours_sc   sc-dmd  --config $W/sc-dmd-8.yaml $BIDI
run bi_rel_sc    sc-dmd  --config $W/sc-dmd-8.yaml $BIDI $RELEASED

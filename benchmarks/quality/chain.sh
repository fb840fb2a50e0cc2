#!/usr/bin/env bash
# The whole synthetic-world chain on a CPU, in order (see benchmarks/quality/README.md for measured times).
# Every stage writes under runs/world/ (git-ignored); the last step copies the embedded default.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=training/configs/world
T="--set run.threads=1"

python -m training vae          --config $W/vae-images.yaml $T     # tiny Wan VAE, stage 1: single frames
python -m training vae          --config $W/vae-clips9.yaml $T     # stage 2: 9-frame clips (temporal layers)
python -m training vae          --config $W/vae.yaml $T            # stage 3: 33-frame clips + latent statistics
python -m training vae          --config $W/vae-local-warm.yaml $T # stage 4: made temporally local, 5-frame windows
python -m training vae          --config $W/vae-local-long.yaml $T # stage 5: 1280 more steps
python -m training vae          --config $W/vae-local-fine.yaml $T # stage 6: 400 at lr 1e-4 (the latents' encoder)
python -m training text-encoder --config $W/text-encoder.yaml $T   # tiny text encoder
python -m training build-latents --config $W/build-latents.yaml $T # world clips -> latents [16, 9, 8, 8]
python -m training build-latents --config $W/build-latents-long.yaml $T # 8 s clips -> latents [16, 33, 8, 8]
python -m training vae          --config $W/vae-decoder.yaml $T    # stage 7: decoder only (may run beside the DiTs)
python -m training vae          --config $W/vae-decoder-temporal.yaml $T # stage 8: decoder only, 9-frame windows, frame-difference loss

python -m training teacher --config $W/teacher.yaml $T             # bidirectional teacher
python -m training teacher --config $W/teacher-ar.yaml $T          # AR teacher (teacher forcing)
python -m training teacher --config $W/teacher-ar-warm.yaml $T     # AR teacher from the bidirectional teacher's weights
python -m training teacher --config $W/teacher-ar-warm-long.yaml $T # ... 3000 more steps
python -m training teacher --config $W/teacher-ar-warm-more.yaml $T # ... and 3000 more
python -m training teacher --config $W/teacher-ar-warm-more2.yaml $T # ... and 3000 more again
python -m training teacher --config $W/teacher-ar-long-clips.yaml $T # ... then 1500 on 8 s clips
python -m training teacher --config $W/teacher-long.yaml $T        # the bidirectional teacher, 6000 more steps

python -m training dmd     --config $W/dmd-4.yaml $T               # DMD, 4-point grid
python -m training dmd     --config $W/dmd-8.yaml $T               # DMD, 8-point grid
python -m training sc-dmd  --config $W/sc-dmd-8.yaml $T            # Salt SC-DMD, 8-point grid
python -m training salt-ar --config $W/ar-dmd.yaml $T              # AR baseline (Self Forcing-style DMD)
python -m training salt-ar --config $W/salt-ar.yaml $T             # Salt-AR (cache-aware)
python -m training dmd     --config $W/dmd-4-tf.yaml $T            # DMD-4 scored by the AR teacher
python -m training salt-ar --config $W/salt-ar-tf.yaml $T          # Salt-AR from and scored by the AR teacher
python -m training salt-ar --config $W/salt-ar-2s.yaml $T          # Salt-AR from the AR teacher, scored by both teachers
python -m training salt-ar --config $W/salt-ar-2s-long.yaml $T     # ... then tuned on 18-frame streams
python -m training salt-ar --config $W/salt-ar-warm-tf.yaml $T     # Salt-AR from and scored by the warm AR teacher
python -m training salt-ar --config $W/salt-ar-warm-2s.yaml $T     # ... scored by both teachers
python -m training salt-ar --config $W/salt-ar-warm-tf-long.yaml $T # salt-ar-warm-tf tuned on 18-frame streams
python -m training salt-ar --config $W/salt-ar-warm-more-tf.yaml $T # Salt-AR from and scored by teacher-ar-warm-more
python -m training salt-ar --config $W/salt-ar-warm-more-tf-long.yaml $T # ... tuned on 18-frame streams
python -m training salt-ar --config $W/salt-ar-warm-more2-tf.yaml $T # Salt-AR from and scored by teacher-ar-warm-more2
python -m training salt-ar --config $W/salt-ar-warm-more2-tf-long.yaml $T # ... tuned on 18-frame streams
python -m training salt-ar --config $W/salt-ar-long-clips.yaml $T  # ... tuned on 18-frame streams against teacher-ar-long-clips
python -m training salt-ar --config $W/salt-ar-long-clips-36.yaml $T # ... then on 36-frame streams
python -m training salt-ar --config $W/salt-ar-long-clips-tf.yaml $T # Salt-AR from and scored by teacher-ar-long-clips
python -m training dmd     --config $W/dmd-4-warm-more-tf.yaml $T  # DMD-4 from teacher-long, scored by it

# the embedded default: Salt-AR from and scored by the AR teacher trained on 8 s clips + its VAE + text encoder
mkdir -p salt_core/assets/default
cp runs/world/salt_ar_long_clips_tf/model.safetensors salt_core/assets/default/dit.safetensors
cp runs/world/vae_temporal/vae.safetensors salt_core/assets/default/vae.safetensors
cp runs/world/text_encoder/text_encoder.safetensors salt_core/assets/default/text_encoder.safetensors

# every model the quality benchmark judges (3.9 MB each), committed next to it
mkdir -p benchmarks/quality/checkpoints
for m in teacher:teacher teacher_ar:teacher-ar dmd_4:dmd-4 dmd_8:dmd-8 sc_dmd_8:sc-dmd-8 ar_dmd:ar-dmd salt_ar:salt-ar \
         dmd_4_tf:dmd-4-tf salt_ar_tf:salt-ar-tf salt_ar_2s:salt-ar-2s \
         salt_ar_2s_long:salt-ar-2s-long teacher_ar_warm_long:teacher-ar-warm salt_ar_warm_tf:salt-ar-warm-tf \
         salt_ar_warm_2s:salt-ar-warm-2s salt_ar_warm_tf_long:salt-ar-warm-tf-long teacher_long:teacher-long \
         teacher_ar_warm_more:teacher-ar-warm-more salt_ar_warm_more_tf:salt-ar-warm-more-tf \
         salt_ar_warm_more_tf_long:salt-ar-warm-more-tf-long dmd_4_warm_more_tf:dmd-4-warm-more-tf \
         teacher_ar_warm_more2:teacher-ar-warm-more2 teacher_ar_long_clips:teacher-ar-long-clips \
         salt_ar_warm_more2_tf:salt-ar-warm-more2-tf salt_ar_warm_more2_tf_long:salt-ar-warm-more2-tf-long \
         salt_ar_long_clips:salt-ar-long-clips salt_ar_long_clips_36:salt-ar-long-clips-36 \
         salt_ar_long_clips_tf:salt-ar-long-clips-tf; do
  cp "runs/world/${m%%:*}/model.safetensors" "benchmarks/quality/checkpoints/${m##*:}.safetensors"
done
python benchmarks/quality/record_trained_with.py   # they decode with the default's VAE (stage 7's decoder)

python benchmarks/quality/evaluate.py --checkpoints benchmarks/quality/checkpoints --prompts 32 --long-prompts 8 --threads 1

#!/usr/bin/env bash
# Reproduces the embedded demo pipeline (src/soraplan/assets/demo/pipeline) from nothing, on CPU:
# a synthetic world, a tiny WF-VAE (soraplan train-vae), a seeded byte-level T5 encoder, and a tiny
# OpenSoraInpaint (soraplan train) with the full mask curriculum, then `soraplan eval` on held-out clips.
# About 2 hours on 2 CPU cores. Environment: OUT (work folder, default runs/demo_model), N_TRAIN and
# N_EVAL (clips), VAE_STEPS, I2V_STEPS, EVAL_CLIPS, SHIP=1 to copy the result over the embedded pipeline.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-runs/demo_model}
VAE_STEPS=${VAE_STEPS:-9000}
I2V_STEPS=${I2V_STEPS:-9000}
N_TRAIN=${N_TRAIN:-1500}
N_EVAL=${N_EVAL:-64}
EVAL_CLIPS=${EVAL_CLIPS:-32}
EVAL_STEPS=${EVAL_STEPS:-100}
SORAPLAN=${SORAPLAN:-soraplan}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

# 1. data: 1,500 training clips and 64 held-out clips (different seed), 17 frames of 64x64 at 8 fps
[ -f "$OUT/world_train/data.txt" ] || $SORAPLAN data synth -o "$OUT/world_train" --n "$N_TRAIN" --seed 1
[ -f "$OUT/world_eval/data.txt" ] || $SORAPLAN data synth -o "$OUT/world_eval" --n "$N_EVAL" --seed 2

# 2. the VAE (4x8x8 compression, 8 latent channels), then its latent statistics; every step resumes
#    from the latest checkpoint, so the script can be stopped and started again (or given more steps)
$SORAPLAN train-vae --video_path "$OUT/world_train/videos" --eval_video_path "$OUT/world_eval/videos" \
  --ckpt_dir "$OUT/vae_run" --model_config "$HERE/wfvae_demo.json" --num_frames 17 --resolution 64 \
  --batch_size 2 --lr 5e-4 --max_steps "$VAE_STEPS" --ema --wavelet_loss --eval_steps 500 \
  --eval_subset_size 16 --save_ckpt_step 500 --checkpoints_total_limit 1 --log_steps 50 --seed 0 \
  --resume_from_checkpoint latest
$PYTHON -m soraplan.demo.recipe latent-stats "$OUT/vae_run/vae" "$OUT/world_train/videos"

# 3. the text encoder: frozen, from a seed
[ -f "$OUT/text_encoder/config.json" ] || $PYTHON -m soraplan.demo.recipe text-encoder "$OUT/text_encoder" --seed 0

# 4. the I2V transformer, trained with the same trainer and flags as the released model's script
$SORAPLAN train --model "$HERE/transformer" --ae_path "$OUT/vae_run/vae" --text_encoder_name_1 "$OUT/text_encoder" \
  --data "$OUT/world_train/data.txt" --validation_data "$OUT/world_eval/data.txt" \
  --output_dir "$OUT/i2v_run" --mask_config "$HERE/mask_config.yaml" \
  --num_frames 17 --max_height 64 --max_width 64 --min_num_frames 17 --train_fps 8 \
  --model_max_length 80 --text_cache_dir "$OUT/text_cache" --cfg 0.1 --default_text_ratio 0.5 \
  --train_batch_size 8 --learning_rate 5e-4 --lr_warmup_steps 200 --lr_scheduler constant_with_warmup \
  --max_grad_norm 1.0 --max_train_steps "$I2V_STEPS" --use_ema --ema_decay 0.999 \
  --checkpointing_steps 500 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
  --validation_steps 500 --log_steps 50 --seed 0

# 5. one pipeline folder, then the evaluation the README quotes
$PYTHON -m soraplan.demo.recipe assemble "$OUT/pipeline" --transformer "$OUT/i2v_run/model_ema" \
  --vae "$OUT/vae_run/vae" --text_encoder "$OUT/text_encoder"
$SORAPLAN eval --pipeline "$OUT/pipeline" --data "$OUT/world_eval/data.txt" --clips "$EVAL_CLIPS" \
  --num_sampling_steps "$EVAL_STEPS" --output "$OUT/eval.json"
if [ "${SHIP:-0}" = 1 ]; then
  rm -rf "$ROOT/src/soraplan/assets/demo/pipeline"
  cp -r "$OUT/pipeline" "$ROOT/src/soraplan/assets/demo/pipeline"
fi

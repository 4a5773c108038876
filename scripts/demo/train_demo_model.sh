#!/usr/bin/env bash
# Reproduces the embedded demo pipeline (src/soraplan/assets/demo/pipeline) from nothing, on CPU:
# a synthetic world, a tiny WF-VAE (soraplan train-vae), a seeded byte-level T5 encoder, and a tiny
# OpenSoraInpaint (soraplan train) with the full mask curriculum, then `soraplan eval` on held-out clips.
#
#   bash scripts/demo/train_demo_model.sh            # every stage, in order (about 3 h 15 min on 2 CPU
#                                                    # cores, of which 21 min are the evaluation)
#   bash scripts/demo/train_demo_model.sh vae        # one stage (or several: data vae latents ...)
#
# Stages: data, vae, latents, text, i2v, i2v_more, assemble, eval. Each one resumes where it stopped (training
# stages from their latest checkpoint, the others skip finished work or redo a few seconds of it), so
# the work can be split over several sittings; a stage needs the ones before it to have finished.
# Wall time per stage is appended to $OUT/stage_times.txt.
# Environment: OUT (work folder, default runs/demo_model), N_TRAIN and N_EVAL (clips), COLOUR_JITTER,
# VAE_STEPS, I2V_STEPS, I2V_MORE_STEPS (0 skips that stage), GUIDANCE (the pipeline's default CFG scale),
# TRANSITION_GUIDANCE (its default for first/last-frame transitions),
# EVAL_CLIPS, EVAL_STEPS, SHIP=1 to copy the result over the embedded pipeline.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-runs/demo_model}
VAE_STEPS=${VAE_STEPS:-9000}
I2V_STEPS=${I2V_STEPS:-9000}
I2V_MORE_STEPS=${I2V_MORE_STEPS:-3000}
N_TRAIN=${N_TRAIN:-3000}
N_EVAL=${N_EVAL:-64}
COLOUR_JITTER=${COLOUR_JITTER:-40}
EVAL_CLIPS=${EVAL_CLIPS:-64}
EVAL_STEPS=${EVAL_STEPS:-100}
GUIDANCE=${GUIDANCE:-3}
TRANSITION_GUIDANCE=${TRANSITION_GUIDANCE:-2}
SORAPLAN=${SORAPLAN:-soraplan}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

# 1. data: training clips whose colours vary around the palette (a model must learn colours, not eight
#    of them) and held-out clips of the plain world (another seed) for the trainers' validation
stage_data() {
  [ -f "$OUT/world_train/data.txt" ] || $SORAPLAN data synth -o "$OUT/world_train" --n "$N_TRAIN" --seed 1 \
    --colour_jitter "$COLOUR_JITTER"
  [ -f "$OUT/world_eval/data.txt" ] || $SORAPLAN data synth -o "$OUT/world_eval" --n "$N_EVAL" --seed 2
}

# 2. the VAE (4x8x8 compression, 8 latent channels)
stage_vae() {
  $SORAPLAN train-vae --video_path "$OUT/world_train/videos" --eval_video_path "$OUT/world_eval/videos" \
    --ckpt_dir "$OUT/vae_run" --model_config "$HERE/wfvae_demo.json" --num_frames 17 --resolution 64 \
    --batch_size 2 --lr 5e-4 --max_steps "$VAE_STEPS" --ema --wavelet_loss --eval_steps 1000 \
    --eval_subset_size 16 --save_ckpt_step 500 --checkpoints_total_limit 1 --log_steps 50 --seed 0 \
    --resume_from_checkpoint latest
}

# 3. its latent statistics (per-channel shift/scale written to the VAE config)
stage_latents() {
  $PYTHON -m soraplan.demo.recipe latent-stats "$OUT/vae_run/vae" "$OUT/world_train/videos"
}

# 4. the text encoder: frozen, from a seed
stage_text() {
  [ -f "$OUT/text_encoder/config.json" ] || $PYTHON -m soraplan.demo.recipe text-encoder "$OUT/text_encoder" --seed 0
}

# the I2V trainer with the same flags as the released model's script; $1 output folder, $2 steps, $3 seed,
# then extra flags
train_i2v() {
  local out=$1 steps=$2 seed=$3
  shift 3
  $SORAPLAN train --model "$HERE/transformer" --ae_path "$OUT/vae_run/vae" --text_encoder_name_1 "$OUT/text_encoder" \
    --data "$OUT/world_train/data.txt" --validation_data "$OUT/world_eval/data.txt" \
    --output_dir "$out" --mask_config "$HERE/mask_config.yaml" \
    --num_frames 17 --max_height 64 --max_width 64 --min_num_frames 17 --train_fps 8 \
    --model_max_length 80 --text_cache_dir "$OUT/text_cache" --cfg 0.1 --default_text_ratio 0.5 \
    --train_batch_size 8 --learning_rate 5e-4 --lr_warmup_steps 200 --lr_scheduler constant_with_warmup \
    --max_grad_norm 1.0 --max_train_steps "$steps" --use_ema --ema_decay 0.999 \
    --checkpointing_steps 500 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
    --validation_steps 500 --log_steps 50 --seed "$seed" "$@"
}

# 5. the I2V transformer
stage_i2v() {
  train_i2v "$OUT/i2v_run" "$I2V_STEPS" 0
}

# 6. a second run of the same trainer, started from the first run's EMA weights with a fresh optimizer
#    and warm-up: more steps at the same learning rate (the first run's last checkpoints were still
#    improving) and more transitions in the mask mix, in a stage of its own so that no single sitting
#    has to hold the whole schedule
stage_i2v_more() {
  [ "$I2V_MORE_STEPS" -gt 0 ] || return 0
  train_i2v "$OUT/i2v_more_run" "$I2V_MORE_STEPS" 1 --pretrained "$OUT/i2v_run/model_ema" \
    --mask_config "$HERE/mask_config_i2v_more.yaml"
}

# 7. one pipeline folder, with the guidance it was measured best at: GUIDANCE, and less for transitions
#    (pinned by two given frames, where text guidance mostly pulls the last frame away from the given one)
stage_assemble() {
  transformer="$OUT/i2v_run/model_ema"
  [ "$I2V_MORE_STEPS" -gt 0 ] && transformer="$OUT/i2v_more_run/model_ema"
  $PYTHON -m soraplan.demo.recipe assemble "$OUT/pipeline" --transformer "$transformer" \
    --vae "$OUT/vae_run/vae" --text_encoder "$OUT/text_encoder" --guidance_scale "$GUIDANCE" \
    --task_guidance "transition=$TRANSITION_GUIDANCE" --num_frames 17
}

# 8. the evaluation the README quotes (held-out world and drawn clips; `soraplan eval --check` would
#    also exit 1 on a missed target)
stage_eval() {
  $SORAPLAN eval --pipeline "$OUT/pipeline" --clips "$EVAL_CLIPS" --num_sampling_steps "$EVAL_STEPS" \
    --output "$OUT/eval.json"
  if [ "${SHIP:-0}" = 1 ]; then
    rm -rf "$ROOT/src/soraplan/assets/demo/pipeline"
    cp -r "$OUT/pipeline" "$ROOT/src/soraplan/assets/demo/pipeline"
  fi
}

source "$HERE/stages.sh"
run_stages data vae latents text i2v i2v_more assemble eval -- "$@"

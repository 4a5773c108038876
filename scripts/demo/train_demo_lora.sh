#!/usr/bin/env bash
# Teaches the embedded demo model a motion it has never seen, diagonal motion ("a red circle moves up
# and to the right on a black background"), with a LoRA adapter (soraplan train --lora_rank) on the
# frozen transformer, on CPU, then measures it against the model without the adapter.
#
#   bash scripts/demo/train_demo_lora.sh                 # every stage, in order
#   bash scripts/demo/train_demo_lora.sh lora            # one stage (or several)
#
# Stages: data (training clips: the world with every motion, the old and the new, so the adapter learns
# the new one without unlearning the old, and as many again of the new one alone), lora (the adapter), eval (soraplan eval on 64 + 64
# held-out clips: the new motion without and with the adapter, the old motions with it; the old motions
# without it are the README's figures for the embedded model). Each resumes where it stopped (lora
# from its latest checkpoint); wall time per stage goes to $OUT/stage_times.txt.
# Environment: OUT (default runs/demo_lora), BASE (default: the embedded pipeline), N_TRAIN, STEPS,
# RANK, ALPHA (default 2 × RANK), TARGETS (the adapted layers), LR, LR_SCHEDULER, EMA_DECAY, MASK_CONFIG, EVAL_CLIPS, NEW_TASKS (tasks measured on the new motion, default i2v), EVAL_TASKS (on the
# old motions, default all three), EVAL_STEPS (default: the pipeline's 100), SCALE (the adapter's strength, measured
# and shipped: default 0.8), SHIP=1 to copy the adapter, SCALE folded in, beside the embedded pipeline.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-runs/demo_lora}
BASE=${BASE:-$ROOT/src/soraplan/assets/demo/pipeline}
N_TRAIN=${N_TRAIN:-1000}
STEPS=${STEPS:-1600}
RANK=${RANK:-16}
ALPHA=${ALPHA:-$((2 * RANK))}
MASK_CONFIG=${MASK_CONFIG:-$HERE/mask_config.yaml}
TARGETS=${TARGETS:-to_q,to_k,to_v,to_out.0,ff.net.0.proj,ff.net.2}
LR=${LR:-3e-3}
LR_SCHEDULER=${LR_SCHEDULER:-constant_with_warmup}
EMA_DECAY=${EMA_DECAY:-0.99}
EVAL_CLIPS=${EVAL_CLIPS:-64}
NEW_TASKS=${NEW_TASKS:-i2v}
EVAL_TASKS=${EVAL_TASKS:-i2v,transition,continuation}
EVAL_STEPS=${EVAL_STEPS:-}
SCALE=${SCALE:-0.8}
SORAPLAN=${SORAPLAN:-soraplan}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

# 1. training clips: the world's nine motions (four of them diagonal) and as many clips of the diagonal
#    ones alone (72 % diagonal in all), colours varied around the palette as for the embedded model,
#    seeds of their own; one data.txt lists both
stage_data() {
  [ -f "$OUT/world_train/data.txt" ] || $SORAPLAN data synth -o "$OUT/world_train" --n "$N_TRAIN" --seed 3 \
    --colour_jitter 40 --motions all
  [ -f "$OUT/world_diagonal/data.txt" ] || $SORAPLAN data synth -o "$OUT/world_diagonal" --n "$N_TRAIN" --seed 5 \
    --colour_jitter 40 --motions diagonal
  cat "$OUT/world_train/data.txt" "$OUT/world_diagonal/data.txt" > "$OUT/train.txt"
  [ -f "$OUT/world_val/data.txt" ] || $SORAPLAN data synth -o "$OUT/world_val" --n 16 --seed 4 --motions diagonal
}

# 2. the adapter (attention projections and feed-forward layers): the I2V trainer with the embedded
#    model's flags and mask mix (mask_config.yaml), the transformer frozen, alpha twice the rank and a
#    learning rate six times the embedded model's 5e-4 (a rank-16 update needs the larger step to move the
#    caption's motion in 1,600 steps); the EMA of the adapter is the one shipped
stage_lora() {
  $SORAPLAN train --model "$BASE/transformer" --pretrained "$BASE/transformer" --ae_path "$BASE/vae" \
    --text_encoder_name_1 "$BASE/text_encoder" --lora_rank "$RANK" --lora_alpha "$ALPHA" \
    --lora_target_modules "$TARGETS" \
    --data "$OUT/train.txt" --validation_data "$OUT/world_val/data.txt" \
    --output_dir "$OUT/run" --mask_config "$MASK_CONFIG" \
    --num_frames 17 --max_height 64 --max_width 64 --min_num_frames 17 --train_fps 8 \
    --model_max_length 80 --text_cache_dir "$OUT/text_cache" --cfg 0.1 --default_text_ratio 0.5 \
    --train_batch_size 8 --learning_rate "$LR" --lr_warmup_steps 100 --lr_scheduler "$LR_SCHEDULER" \
    --max_grad_norm 1.0 --max_train_steps "$STEPS" --use_ema --ema_decay "$EMA_DECAY" \
    --checkpointing_steps 250 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
    --validation_steps 500 --log_steps 50 --seed 0
}

# 3. what the adapter does: the new motion without and with it (i2v: the task that must follow the
#    caption's motion from a single frame), the old motions with it (every task); at SCALE, since at
#    full strength the adapter keeps shape and colour less well (0.8 measured best: README)
stage_eval() {
  local adapter="$OUT/run/lora_ema" steps=()
  [ -z "$EVAL_STEPS" ] || steps=(--num_sampling_steps "$EVAL_STEPS")
  $SORAPLAN eval --pipeline "$BASE" --motions diagonal --clips "$EVAL_CLIPS" --tasks "$NEW_TASKS" "${steps[@]}" \
    --output "$OUT/eval_diagonal_base.json"
  $SORAPLAN eval --pipeline "$BASE" --lora "$adapter:$SCALE" --motions diagonal --clips "$EVAL_CLIPS" \
    --tasks "$NEW_TASKS" "${steps[@]}" --output "$OUT/eval_diagonal_lora.json"
  $SORAPLAN eval --pipeline "$BASE" --lora "$adapter:$SCALE" --clips "$EVAL_CLIPS" --tasks "$EVAL_TASKS" "${steps[@]}" \
    --output "$OUT/eval_axis_lora.json"
  if [ "${SHIP:-0}" = 1 ]; then  # the adapter (SCALE folded in: --lora diagonal is what was measured) and
    local shipped="$ROOT/src/soraplan/assets/demo/loras/diagonal"  # examples of its motion for the demo
    $PYTHON -m soraplan.demo.recipe examples "$OUT/examples" --motions diagonal
    rm -rf "$shipped.partial"
    $SORAPLAN lora scale --lora "$adapter:$SCALE" -o "$shipped.partial"
    cp "$OUT/examples"/* "$shipped.partial"/
    rm -rf "$shipped" && mv "$shipped.partial" "$shipped"
  fi
}

source "$HERE/stages.sh"
run_stages data lora eval -- "$@"

#!/usr/bin/env bash
# Few-step student of the released 2B I2V model (soraplan distill --method lcm: latent consistency
# distillation with the release's guidance 7.5 built in; 4 steps, no guidance pass, LCMScheduler).
# Set DATA (the I2V training data.txt); the teacher and its VAE / text encoder default to the release's
# Hub ids. Extra flags after the script name are passed on (later flags win), e.g. --method guidance
# for a guidance-only student at the teacher's 100 steps.
# The demo's second stage (README "The demo student": +0.9-1.4 dB on the frames the user gives) is the same
# script run again from this student with the given-frames term, e.g.
#   OUTPUT_DIR=runs/distill_inpaint_anchored bash scripts/text_condition/gpu/distill_inpaint_v1_3.sh \
#     --student_init runs/distill_inpaint_93x640x640/pipeline --given_frames_weight 10 --max_train_steps 500
# (untried at this size: its weight and length are the demo's).
#
# Memory plan per GPU (80 GB class, bf16, ZeRO-2 over 8 GPUs):
#   teacher    2.7 B parameters in bf16, frozen, no gradients or optimizer state    5.4 GB
#   target     the student's EMA for the consistency target, fp32, no gradients      10.8 GB
#              (--target_ema_decay 0 drops it: the student itself, without gradient, is the target)
#   student    bf16 weights 5.4 GB + bf16 gradients 5.4 GB; fp32 master weights and Adam moments
#              (32.4 GB) partitioned over the 8 ranks by ZeRO-2: 4.1 GB                  ~15 GB
#   EMA        --use_ema keeps an fp32 copy on every rank                                10.8 GB
#   activations: 93x352x640 (21,120 tokens) at batch 1 with --gradient_checkpointing; the teacher and the
#   target run under no_grad, so only the student's forward is kept (per block inputs)
# Cost, an estimate (not measured: no GPU run yet): one step per sample is the teacher's guided pass (2
# forwards, ~294 TFLOP at this size), the student's forward and backward with checkpointing (~4 forwards,
# ~590 TFLOP) and the target's forward (~150 TFLOP): about 1 PFLOP, some 2.5 s on an H100 at 40 % of its
# bf16 peak. 4,000 steps at a global batch of 32 are then about 90 GPU-hours (about 11 h on 8 H100s).
set -euo pipefail
DATA=${DATA:-scripts/train_data/video_data.txt}
TEACHER=${TEACHER:-LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v}
AE_PATH=${AE_PATH:-LanguageBind/Open-Sora-Plan-v1.3.0/vae}
TEXT_ENCODER=${TEXT_ENCODER:-google/mt5-xxl}
OUTPUT_DIR=${OUTPUT_DIR:-runs/distill_inpaint_93x640x640}
LAUNCH=${LAUNCH:-accelerate launch --config_file scripts/accelerate_configs/deepspeed_zero2_config.yaml}

$LAUNCH -m soraplan distill \
    --teacher "$TEACHER" \
    --ae_path "$AE_PATH" \
    --text_encoder_name_1 "$TEXT_ENCODER" \
    --method lcm \
    --guidance_scale 7.5 \
    --teacher_steps 40 \
    --student_steps 4 \
    --target_ema_decay 0.95 \
    --huber_c 0.001 \
    --data "$DATA" \
    --num_frames 93 \
    --max_hxw 236544 \
    --min_hxw 102400 \
    --hw_stride 32 \
    --train_fps 18 \
    --gradient_checkpointing \
    --train_batch_size 1 \
    --gradient_accumulation_steps 4 \
    --dataloader_num_workers 8 \
    --max_train_steps 4000 \
    --learning_rate 1e-6 \
    --lr_scheduler constant_with_warmup \
    --lr_warmup_steps 100 \
    --mixed_precision bf16 \
    --allow_tf32 \
    --model_max_length 512 \
    --mask_config scripts/train_configs/mask_config.yaml \
    --add_noise_to_condition \
    --use_ema \
    --ema_decay 0.999 \
    --checkpointing_steps 250 \
    --resume_from_checkpoint latest \
    --seed 1234 \
    --output_dir "$OUTPUT_DIR" \
    "$@"

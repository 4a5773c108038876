#!/usr/bin/env bash
# I2V training of Open-Sora Plan v1.3 (the reference's scripts/text_condition/gpu/train_inpaint_v1_3.sh)
# with soraplan as the entry point. Set DATA; the model paths default to the release's Hub ids (fetched
# on first use) or take local folders. LAUNCH overrides the launcher, e.g. on a CPU:
#   LAUNCH="torchrun --nproc_per_node 2" bash scripts/text_condition/gpu/train_inpaint_v1_3.sh --max_train_steps 10
# Extra flags after the script name are passed on (later flags win).
set -euo pipefail
DATA=${DATA:-scripts/train_data/video_data.txt}
MODEL=${MODEL:-OpenSoraInpaint_v1_3-2B/122}
PRETRAINED=${PRETRAINED:-LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640}
AE_PATH=${AE_PATH:-LanguageBind/Open-Sora-Plan-v1.3.0/vae}
TEXT_ENCODER=${TEXT_ENCODER:-google/mt5-xxl}
OUTPUT_DIR=${OUTPUT_DIR:-runs/inpaint_93x640x640}
LAUNCH=${LAUNCH:-accelerate launch --config_file scripts/accelerate_configs/deepspeed_zero2_config.yaml}

$LAUNCH -m soraplan train \
    --model "$MODEL" \
    --pretrained "$PRETRAINED" \
    --text_encoder_name_1 "$TEXT_ENCODER" \
    --dataset inpaint \
    --data "$DATA" \
    --ae WFVAEModel_D8_4x8x8 \
    --ae_path "$AE_PATH" \
    --sample_rate 1 \
    --num_frames 93 \
    --max_hxw 236544 \
    --min_hxw 102400 \
    --interpolation_scale_t 1.0 \
    --interpolation_scale_h 1.0 \
    --interpolation_scale_w 1.0 \
    --gradient_checkpointing \
    --train_batch_size 1 \
    --dataloader_num_workers 8 \
    --gradient_accumulation_steps 1 \
    --max_train_steps 1000000 \
    --learning_rate 1e-5 \
    --lr_scheduler constant \
    --lr_warmup_steps 0 \
    --mixed_precision bf16 \
    --checkpointing_steps 1000 \
    --allow_tf32 \
    --model_max_length 512 \
    --use_ema \
    --ema_start_step 0 \
    --cfg 0.1 \
    --default_text_ratio 0.5 \
    --mask_config scripts/train_configs/mask_config.yaml \
    --add_noise_to_condition \
    --resume_from_checkpoint latest \
    --speed_factor 1.0 \
    --ema_decay 0.9999 \
    --drop_short_ratio 0.0 \
    --hw_stride 32 \
    --sparse1d --sparse_n 4 \
    --train_fps 18 \
    --seed 1234 \
    --trained_data_global_step 0 \
    --group_data \
    --prediction_type v_prediction \
    --output_dir "$OUTPUT_DIR" \
    "$@"

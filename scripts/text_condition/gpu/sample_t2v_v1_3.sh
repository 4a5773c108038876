#!/usr/bin/env bash
# Text-to-video sampling with the released Open-Sora Plan v1.3 T2V model (any93x640x640 folder),
# through the same soraplan entry point as image-to-video. Extra flags are passed on.
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640}
AE_PATH=${AE_PATH:-LanguageBind/Open-Sora-Plan-v1.3.0/vae}
TEXT_ENCODER=${TEXT_ENCODER:-google/mt5-xxl}
PROMPTS=${PROMPTS:-examples/sora.txt}
NPROC=${NPROC:-8}

torchrun --nnodes=1 --nproc_per_node "$NPROC" --master_port "${MASTER_PORT:-29514}" \
    -m soraplan sample \
    --model_type "t2v" \
    --model_path "$MODEL_PATH" \
    --version v1_3 \
    --num_frames 93 \
    --height 352 \
    --width 640 \
    --text_encoder_name_1 "$TEXT_ENCODER" \
    --text_prompt "$PROMPTS" \
    --ae WFVAEModel_D8_4x8x8 \
    --ae_path "$AE_PATH" \
    --save_img_path "${SAVE_PATH:-./sample_video_t2v}" \
    --fps 18 \
    --guidance_scale 7.5 \
    --num_sampling_steps 100 \
    --max_sequence_length 512 \
    --sample_method EulerAncestralDiscrete \
    --seed 1234 \
    --num_samples_per_prompt 1 \
    --rescale_betas_zero_snr \
    --prediction_type "v_prediction" \
    "$@"

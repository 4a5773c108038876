#!/usr/bin/env bash
# Image-to-video sampling with the released Open-Sora Plan v1.3 I2V model: the reference's
# scripts/text_condition/gpu/sample_inpaint_v1_3.sh with soraplan as the entry point.
# The paths default to the release's Hub ids (fetched on first use); point them at local folders, or
# MODEL_PATH at any soraplan pipeline folder (its own VAE and text encoder are then used); extra flags
# after the script name are passed on (later flags win), e.g. `--sp` or `--dtype bf16`.
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v}
AE_PATH=${AE_PATH:-LanguageBind/Open-Sora-Plan-v1.3.0/vae}
TEXT_ENCODER=${TEXT_ENCODER:-google/mt5-xxl}
PROMPTS=${PROMPTS:-examples/cond_prompt.txt}
CONDITIONS=${CONDITIONS:-examples/cond_pix_path.txt}
NPROC=${NPROC:-8}

torchrun --nnodes=1 --nproc_per_node "$NPROC" --master_port "${MASTER_PORT:-29513}" \
    -m soraplan sample \
    --model_type "inpaint" \
    --model_path "$MODEL_PATH" \
    --version v1_3 \
    --num_frames 93 \
    --height 352 \
    --width 640 \
    --max_hxw 236544 \
    --crop_for_hw \
    --text_encoder_name_1 "$TEXT_ENCODER" \
    --text_prompt "$PROMPTS" \
    --conditional_pixel_values_path "$CONDITIONS" \
    --ae WFVAEModel_D8_4x8x8 \
    --ae_path "$AE_PATH" \
    --save_img_path "${SAVE_PATH:-./save_path}" \
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

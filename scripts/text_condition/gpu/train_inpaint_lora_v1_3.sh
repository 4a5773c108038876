#!/usr/bin/env bash
# A LoRA adapter on the released 2B I2V model (soraplan train --lora_rank) on one GPU: the transformer
# frozen in bf16, rank-64 adapters on every attention projection, gradient checkpointing, the mT5-XXL
# text encoder on the CPU with its states cached per caption. Set DATA (data.txt of your clips); the
# model paths default to the release's Hub ids or take local folders. The adapter comes out as
# OUTPUT_DIR/lora_ema (and lora/): `soraplan sample --model_path ... --lora OUTPUT_DIR/lora_ema`.
# Extra flags after the script name are passed on (later flags win).
#
# Peak memory per GPU at 93x352x640, batch 1 (an estimate: `python bench/lora_memory.py` counts the
# parameters on the meta device and measures the activations on CPU with 2-6 of the release's blocks at
# its width, then scales them; no GPU run yet):
#   frozen transformer, bf16 (2.78 B parameters)                                     5.2 GiB
#   adapter, 75.5 M parameters: fp32 weights, gradients, Adam moments, EMA             1.4 GiB
#   WF-VAE, bf16 (mT5-XXL stays on the CPU: --text_encoder_device cpu)                 0.3 GiB
#   activations with gradient checkpointing (21,120 tokens): 32 block inputs 2.9 GiB,
#     one block rebuilt in the backward pass 2.2 GiB, the gradient between blocks      5.5 GiB
#   CUDA context, workspaces, fragmentation (an allowance)                             2.0 GiB
#   total                                                                          about 14 GiB: one 24 GB GPU
# (without gradient checkpointing the activations alone would be about 71 GiB). The VAE encodes each
# clip before the transformer runs; its own transient peak is over by then (AE tiling keeps it small).
set -euo pipefail
DATA=${DATA:-scripts/train_data/video_data.txt}
MODEL=${MODEL:-LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v}
AE_PATH=${AE_PATH:-LanguageBind/Open-Sora-Plan-v1.3.0/vae}
TEXT_ENCODER=${TEXT_ENCODER:-google/mt5-xxl}
OUTPUT_DIR=${OUTPUT_DIR:-runs/inpaint_lora_93x640x640}
RANK=${RANK:-64}
LAUNCH=${LAUNCH:-accelerate launch --config_file scripts/accelerate_configs/ddp_config.yaml}

$LAUNCH -m soraplan train \
    --model "$MODEL" \
    --pretrained "$MODEL" \
    --text_encoder_name_1 "$TEXT_ENCODER" \
    --text_encoder_device cpu \
    --text_cache_dir "$OUTPUT_DIR/text_cache" \
    --ae_path "$AE_PATH" \
    --lora_rank "$RANK" \
    --lora_alpha "$RANK" \
    --lora_target_modules to_q,to_k,to_v,to_out.0 \
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
    --max_train_steps 2000 \
    --learning_rate 1e-4 \
    --lr_scheduler constant_with_warmup \
    --lr_warmup_steps 100 \
    --mixed_precision bf16 \
    --allow_tf32 \
    --model_max_length 512 \
    --cfg 0.1 \
    --default_text_ratio 0.5 \
    --mask_config scripts/train_configs/mask_config.yaml \
    --add_noise_to_condition \
    --use_ema \
    --ema_decay 0.999 \
    --checkpointing_steps 250 \
    --checkpoints_total_limit 2 \
    --resume_from_checkpoint latest \
    --seed 1234 \
    --output_dir "$OUTPUT_DIR" \
    "$@"

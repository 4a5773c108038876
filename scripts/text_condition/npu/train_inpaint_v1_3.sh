#!/usr/bin/env bash
# I2V training on Ascend NPUs (the reference's scripts/text_condition/npu/train_inpaint_v1_3.sh): the same
# recipe as the GPU script; accelerate and soraplan use the npu device and HCCL when torch_npu is
# installed. Same environment variables and extra flags as the GPU script.
exec bash "$(dirname "$0")/../gpu/train_inpaint_v1_3.sh" "$@"

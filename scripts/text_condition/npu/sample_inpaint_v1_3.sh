#!/usr/bin/env bash
# Image-to-video sampling on Ascend NPUs (the reference's scripts/text_condition/npu/sample_inpaint_v1_3.sh):
# the GPU script with the NPU script's settings (50 steps, seed 2514); soraplan picks the npu device and
# HCCL when torch_npu is installed. Same environment variables and extra flags as the GPU script.
exec bash "$(dirname "$0")/../gpu/sample_inpaint_v1_3.sh" --num_sampling_steps 50 --seed 2514 "$@"

"""``soraplan train-vae``: train or fine-tune a WF-VAE on a folder of videos (flags as the reference's
``train_causalvae.py``). Runs as one process, or under ``accelerate launch`` / ``torchrun``."""

from __future__ import annotations

import dataclasses
import json
import os

from .dataclass_args import add_dataclass_arguments, dataclass_from_args
from .errors import UserError
from .options import resolve_model_flag


def add_parser(subparsers) -> None:
    from ..training.vae_trainer import VAETrainConfig

    parser = subparsers.add_parser("train-vae", help="train a WF-VAE on a folder of videos")
    helps = {
        "video_path": "folder of training videos (searched recursively)",
        "ckpt_dir": "output folder: checkpoint-N/, vae/ (final model), metrics.jsonl",
        "model_config": "WF-VAE config.json to train from scratch",
        "pretrained_model_name_or_path": "WF-VAE folder or Hub id (LanguageBind/Open-Sora-Plan-v1.3.0/vae) to fine-tune",
        "eval_video_path": "folder of held-out videos; PSNR is reported on them",
        "num_frames": "frames per clip, 4k+1",
        "resolution": "square clip size in pixels, multiple of 8",
        "max_steps": "stop after this many steps (default: epochs x steps per epoch)",
        "mix_precision": "fp32, bf16 or fp16",
        "resume_from_checkpoint": "'latest' or a checkpoint-N folder",
        "disc_start": "step at which the patch-GAN discriminator starts (default: no discriminator)",
        "lpips_weights": "safetensors file with VGG16 features + LPIPS heads (soraplan.training.lpips)",
        "wavelet_loss": "add the energy-flow wavelet loss",
        "ema": "keep an EMA of the weights (saved as vae_ema/, used for eval and the final model)",
        "collective_timeout": "several processes: seconds one waits for the others in a collective before it "
                              "reports them lost",
    }
    add_dataclass_arguments(parser, VAETrainConfig, helps,
                            choices={"mix_precision": ["fp32", "bf16", "fp16"], "loss_type": ["l1", "l2"]})
    parser.set_defaults(run=run)


def validate(config) -> None:
    if config.num_frames < 1 or (config.num_frames - 1) % 4:
        raise UserError(f"--num_frames {config.num_frames} is not 4k+1 (e.g. 9, 17, 25, 33)")
    if config.eval_num_frames is not None and (config.eval_num_frames - 1) % 4:
        raise UserError(f"--eval_num_frames {config.eval_num_frames} is not 4k+1")
    if config.resolution < 8 or config.resolution % 8:
        raise UserError(f"--resolution {config.resolution} must be a positive multiple of 8")
    if not config.model_config and not config.pretrained_model_name_or_path:
        raise UserError("give --model_config CONFIG.json (train from scratch) or --pretrained_model_name_or_path DIR")
    if config.loss_type not in ("l1", "l2"):
        raise UserError(f"--loss_type must be l1 or l2, got {config.loss_type!r}")
    if config.batch_size < 1:
        raise UserError("--batch_size must be at least 1")


def run(args) -> int:
    from ..training.runtime import PeerFailure
    from ..training.vae_trainer import VAETrainConfig, train_vae

    config = dataclass_from_args(VAETrainConfig, args)
    validate(config)
    if config.pretrained_model_name_or_path:
        source = resolve_model_flag(config.pretrained_model_name_or_path, "--pretrained_model_name_or_path")
        config = dataclasses.replace(config, pretrained_model_name_or_path=str(source.folder))
    try:
        result = train_vae(config)
    except (FileNotFoundError, ValueError, json.JSONDecodeError, PeerFailure) as error:
        raise UserError(str(error)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0

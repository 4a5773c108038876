"""``soraplan train``: train the I2V (inpaint) transformer (flags as the reference's ``train_inpaint.py``).

One process, ``torchrun --nproc_per_node N -m soraplan train ...`` or
``accelerate launch [--config_file scripts/accelerate_configs/...] -m soraplan train ...``.
"""

from __future__ import annotations

import json
import os

from .dataclass_args import add_dataclass_arguments, dataclass_from_args
from .errors import UserError
from .options import resolve_model_flag

HELPS = {
    "data": "data.txt with DATA_ROOT,ANNOTATION lines",
    "output_dir": "checkpoint-N/ folders, model/ (final), metrics.jsonl",
    "model": "registry name (OpenSoraInpaint_v1_3-2B/122), or a folder or Hub id with a config.json",
    "pretrained": "T2V or I2V transformer (folder or Hub id) to initialise from",
    "ae_path": "WF-VAE folder or Hub id (LanguageBind/Open-Sora-Plan-v1.3.0/vae)",
    "text_encoder_name_1": "T5/mT5 folder or Hub id (google/mt5-xxl): encoder + tokenizer",
    "mask_config": "YAML with mask_type_ratio_dict_video/_image and min/max_clear_ratio",
    "resume_from_checkpoint": "'latest' or a checkpoint-N folder",
    "validation_data": "data.txt of held-out clips: a validation loss at fixed noise every --validation_steps",
    "validation_prompt": "also write a sampled video every --validation_steps",
    "clean_video_captions": "clean up video captions too (lower-case, no URLs/HTML); the reference cleans image "
                            "captions only",
    "text_encoder_device": "where the frozen text encoder runs (default: with the model); 'cpu' saves its memory "
                           "on the accelerator (mT5-XXL: 10.5 GiB in bf16), best with --text_cache_dir",
    "condition_roundtrip": "share (0-1) of the samples of --condition_roundtrip_masks types whose given frames are "
                           "first passed through the VAE, as a long video's later segments are given them",
    "condition_roundtrip_masks": "comma-separated mask types --condition_roundtrip applies to",
    "continuation_anchor": "share (0-1) of the batches made anchored continuations: each sample's video's first "
                           "frame given before the clip as an extra latent frame (clips cut from later in longer "
                           "videos); the model then takes `soraplan sample --anchor`'s reference frame",
    "lora_rank": "train a LoRA adapter of this rank on the frozen transformer (0: every weight); the run writes "
                 "lora/ (diffusers' LoRA file, for --lora) instead of model/",
    "lora_alpha": "LoRA scale numerator (default: the rank, i.e. scale 1)",
    "lora_target_modules": "comma-separated names of the linear layers to adapt",
    "lora_dropout": "dropout on the adapter's input",
    "collective_timeout": "several processes: seconds one waits for the others in a collective before it reports "
                          "them lost (a frozen or unreachable node; a killed one is noticed at once)",
}


TRAIN_CHOICES = {
    "mixed_precision": ["no", "fp32", "bf16", "fp16"], "prediction_type": ["v_prediction", "epsilon"],
    "lr_scheduler": ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"],
    "report_to": ["tensorboard", "wandb"],
}


def add_parser(subparsers) -> None:
    from ..training.i2v_trainer import TrainConfig

    parser = subparsers.add_parser("train", help="train the image-to-video transformer")
    add_dataclass_arguments(parser, TrainConfig, HELPS, choices=TRAIN_CHOICES)
    parser.set_defaults(run=run)


def with_local_folders(config):
    """The config with every model flag given as a Hub id replaced by its local (cached) folder."""
    import dataclasses

    from ..training.i2v_trainer import REGISTRY

    changes = {}
    for name in ("model", "pretrained", "ae_path", "text_encoder_name_1"):
        value = getattr(config, name)
        if value is not None and not (name == "model" and value in REGISTRY):
            changes[name] = str(resolve_model_flag(value, f"--{name}").folder)
    return dataclasses.replace(config, **changes)


def run(args) -> int:
    from ..training.i2v_trainer import TrainConfig, train
    from ..training.runtime import PeerFailure

    try:
        config = dataclass_from_args(TrainConfig, args)  # validates the data flags before anything loads
        config = with_local_folders(config)
        result = train(config)
    except (FileNotFoundError, ValueError, json.JSONDecodeError, PeerFailure) as error:
        raise UserError(str(error)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0

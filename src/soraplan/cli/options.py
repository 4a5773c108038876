"""Flags that several commands share, defined and checked in one place."""

from __future__ import annotations

import torch

from .errors import UserError

# --dtype's names (sample, serve; recorded by name in an output's provenance)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_cache_threshold(parser) -> None:
    """``--cache_threshold``: step caching (soraplan.acceleration.step_cache) in sample, demo and eval."""
    parser.add_argument("--cache_threshold", type=float, default=0.0, help=(
        "step caching: skip a transformer evaluation while its input changed less than this (accumulated "
        "relative L1) since the last full one; 0 = off, 0.4 ~ 2x fewer evaluations"))


def check_cache_threshold(args) -> None:
    """Before the model loads: a negative threshold is a user mistake, not a traceback."""
    if args.cache_threshold < 0:
        raise UserError(f"--cache_threshold must be >= 0, got {args.cache_threshold}")


def add_sampling_defaults(parser) -> None:
    """``--num_sampling_steps`` and ``--guidance_scale``; unset, they are the pipeline folder's own
    (model_index.json: the release's 100 and 7.5, the demo model's its own)."""
    parser.add_argument("--num_sampling_steps", type=int, default=None,
                        help="denoising steps (default: the pipeline's, 100 for the release)")
    parser.add_argument("--guidance_scale", type=float, default=None,
                        help="classifier-free guidance scale, 1 = off (default: the pipeline's, 7.5 for the release)")


def check_sampling_defaults(args) -> None:
    if args.num_sampling_steps is not None and args.num_sampling_steps < 1:
        raise UserError("--num_sampling_steps must be at least 1")
    if args.guidance_scale is not None and args.guidance_scale < 0:
        raise UserError(f"--guidance_scale must be >= 0, got {args.guidance_scale}")


NOT_A_PIPELINE = ("not a pipeline folder (no model_index.json); a transformer folder samples with `soraplan sample "
                  "--model_path ... --ae_path ... --text_encoder_name_1 ...`")


def add_lora_option(parser) -> None:
    """``--lora PATH[:SCALE]``, repeatable: LoRA adapters on the transformer, combined at their scales."""
    parser.add_argument("--lora", action="append", default=None, metavar="PATH[:SCALE]", help=(
        "a LoRA adapter (folder with pytorch_lora_weights.safetensors, the file, or the name of an adapter "
        "shipped with the demo model, e.g. diagonal) at SCALE (default 1); repeat for several, combined"))


def add_hub_options(parser, flag: str) -> None:
    """``--subfolder`` and ``--revision`` for the command's main model flag (``flag``); every other model
    flag names its own as ``ORG/NAME/SUBFOLDER@REVISION``."""
    parser.add_argument("--subfolder", default=None, help=f"folder inside {flag} (a Hub repository or a local folder)")
    parser.add_argument("--revision", default=None,
                        help=f"branch, tag or commit of a Hub id given to {flag} (default: main)")


def resolve_model_flag(value, flag: str, subfolder: str | None = None, revision: str | None = None,
                       cache_dir: str | None = None, unless_pipeline: str | None = None):
    """A local folder for a model flag's value (a folder or a Hub id); one-line UserError otherwise.

    Returns the soraplan.hub.ModelSource, or None for an unset flag.
    """
    if value is None:
        return None
    from ..hub import ModelSourceError, resolve_model

    try:
        return resolve_model(value, subfolder=subfolder, revision=revision, what=flag, cache_dir=cache_dir,
                             unless_pipeline=unless_pipeline)
    except ModelSourceError as error:
        raise UserError(str(error)) from None

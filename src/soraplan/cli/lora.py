"""``soraplan lora``: adapters as files of their own.

* ``merge``: a base model with LoRA adapters merged into its weights, as a plain folder. The output needs
  no adapter support to load (``from_pretrained`` / ``soraplan sample --model_path``) and samples at the
  base model's speed; it equals loading the adapters and calling ``fuse_lora`` (tested).
* ``scale``: an adapter with a strength folded into its weights, so that at weight 1 (``--lora OUT``, or
  any diffusers loader) it does what the input does at ``--lora IN:SCALE``. Why: an adapter often works
  best below full strength (the demo's diagonal one keeps colour better at 0.8); shipping it scaled
  makes that the default everyone gets, instead of a number each user must know.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .options import add_hub_options, add_lora_option, resolve_model_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("lora", help="LoRA adapters: merge them into a model, or fold in a scale")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    merge = actions.add_parser("merge", help="write BASE with the adapters merged in, as a plain model folder")
    merge.add_argument("--model_path", required=True, help="pipeline folder or Hub id, or a transformer folder")
    add_hub_options(merge, "--model_path")
    add_lora_option(merge)
    merge.add_argument("-o", "--output_dir", required=True, help="the merged folder (written whole, then renamed)")
    merge.set_defaults(run=run)
    scale = actions.add_parser("scale", help="write an adapter whose weight 1 is the given adapter at SCALE")
    add_lora_option(scale)
    scale.add_argument("-o", "--output_dir", required=True,
                       help="the scaled adapter's folder (written whole, then renamed)")
    scale.set_defaults(run=run_scale)


def run(args) -> int:
    from ..pipelines.lora import apply_loras, resolve_lora_specs
    from ..utils.files import atomic_directory

    if not args.lora:
        raise UserError("give at least one --lora PATH[:SCALE] to merge")
    out = new_output_folder(args.output_dir)
    try:
        loras = resolve_lora_specs(args.lora)
        base = resolve_model_flag(args.model_path, "--model_path", args.subfolder, args.revision).folder
        target = load_target(base)
        names = apply_loras(target, loras, fuse=True)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise UserError(str(error)) from None
    with atomic_directory(out) as folder:
        target.save_pretrained(folder)
    merged = ", ".join(f"{name} x {scale:g}" for name, (_, scale) in zip(names, loras))
    print(f"merged {merged} into {args.model_path} -> {out}")
    return 0


def new_output_folder(value: str) -> Path:
    """``-o``: a folder that does not exist yet or is empty (nothing of the user's is overwritten)."""
    out = Path(value)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"-o {out} exists and is not empty: give a new folder")
    return out


def load_target(folder: Path):
    """The pipeline in ``folder`` (model_index.json), or its transformer (config.json)."""
    from ..models.checkpoints import read_config, transformer_class
    from ..pipelines import load_pipeline

    if (folder / "model_index.json").is_file():
        return load_pipeline(str(folder))
    if (folder / "config.json").is_file():
        return transformer_class(read_config(folder)).from_pretrained(folder)
    raise FileNotFoundError(f"--model_path {folder}: neither a pipeline folder (model_index.json) nor a "
                            "transformer folder (config.json)")


def run_scale(args) -> int:
    from ..pipelines.lora import resolve_lora_specs, save_scaled_adapter

    if not args.lora or len(args.lora) != 1:
        raise UserError("give exactly one --lora PATH:SCALE to scale")
    out = new_output_folder(args.output_dir)
    try:
        [(file, factor)] = resolve_lora_specs(args.lora)
        save_scaled_adapter(file, factor, out)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise UserError(str(error)) from None
    print(f"{file} x {factor:g} -> {out}")
    return 0

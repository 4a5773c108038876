"""``soraplan inspect FOLDER``: is this transformer folder loadable by soraplan, and what is in it?

Reads only config.json and the safetensors headers, so it answers in a second even for the 11 GB
release.
"""

from __future__ import annotations

import json

from ..models.checkpoints import check_checkpoint_folder
from .errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect", help="check a transformer checkpoint folder against the architecture its config describes"
    )
    parser.add_argument("folder", help="folder with config.json and diffusion_pytorch_model*.safetensors")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)


def describe_layers(kinds: list[str], sparse_n: int) -> str:
    dense = [str(i) for i, kind in enumerate(kinds) if kind == "dense"]
    text = f"{len(kinds)} layers: dense x{len(dense)} ({', '.join(dense)})"
    for kind, label in (("single", "single-skip"), ("group", "group-skip")):
        count = kinds.count(kind)
        if count:
            text += f", {label} x{count}"
    if "single" in kinds or "group" in kinds:
        text += f" (Skiparse k={sparse_n})"
    return text


def run(args) -> int:
    try:
        check = check_checkpoint_folder(args.folder)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as error:
        raise UserError(str(error)) from None
    if args.json:
        print(json.dumps({
            "class": check.model_class.__name__,
            "config_class_name": check.config.get("_class_name"),
            "num_parameters": check.num_parameters,
            "num_tensors": len(check.stored),
            "layers": check.layer_kinds,
            "ok": check.ok,
            "missing": check.missing,
            "unexpected": check.unexpected,
            "wrong_shape": [[k, list(s), list(e)] for k, s, e in check.wrong_shape],
        }, indent=2))
        return 0 if check.ok else 1
    print(f"folder:     {args.folder}")
    print(f"class:      {check.model_class.__name__} (config _class_name: {check.config.get('_class_name')})")
    print(f"parameters: {check.num_parameters:,} in {len(check.stored)} stored tensors")
    print(f"layers:     {describe_layers(check.layer_kinds, check.config.get('sparse_n', 2))}")
    if check.ok:
        print("checkpoint: every key and shape matches; loads with from_pretrained")
        return 0
    for key in check.missing:
        print(f"missing:    {key}")
    for key in check.unexpected:
        print(f"unexpected: {key}")
    for key, stored, expected in check.wrong_shape:
        print(f"shape:      {key} stored {stored}, config implies {expected}")
    print("checkpoint: does NOT match its config")
    return 1

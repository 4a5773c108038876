"""``soraplan download``: fetch the released Open-Sora Plan v1.3 models ahead of time.

Sampling with Hub ids fetches on first use anyway; this command is for doing it once, up front (a
machine without network later, a shared cache, a plain folder with ``--local_dir``), and it ends by
printing the ``soraplan sample`` line that uses what it fetched.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .errors import UserError

# (flag, what it is, Hub id): the release's parts, in the order they are fetched.
PARTS = (
    ("i2v", "I2V (inpaint) transformer, 11 GB", "RELEASE_I2V"),
    ("t2v", "T2V transformer, 11 GB", "RELEASE_T2V"),
    ("vae", "WF-VAE", "RELEASE_VAE"),
    ("text_encoder", "mT5-XXL text encoder (google/mt5-xxl)", "RELEASE_TEXT_ENCODER"),
    ("caption_refiner", "caption refiner (optional; a Llama-3.1-8B-Instruct fine-tune)", "RELEASE_CAPTION_REFINER"),
)
DEFAULT_PARTS = ("i2v", "vae", "text_encoder")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("download", help="fetch the released models (Hugging Face Hub) ahead of time")
    for flag, what, _ in PARTS:
        p.add_argument(f"--{flag}", action="store_true", help=what)
    p.add_argument("--local_dir", default=None, help=(
        "put the files in this folder (one sub-folder per repository) instead of the Hugging Face cache"))
    p.add_argument("--cache_dir", default=None, help="Hugging Face cache to use (default: HF_HOME's)")
    p.set_defaults(run=run)


def release_ids() -> dict[str, str]:
    from .. import hub

    return {flag: getattr(hub, name) for flag, _, name in PARTS}


def run(args) -> int:
    from ..hub import ModelSourceError, parse_hub_id, resolve_model

    if args.local_dir and args.cache_dir:
        raise UserError("give --local_dir or --cache_dir, not both")
    chosen = [flag for flag, _, _ in PARTS if getattr(args, flag)] or list(DEFAULT_PARTS)
    ids = release_ids()
    folders = {}
    for flag in chosen:
        spec = ids[flag]
        repo_id, _, _ = parse_hub_id(spec)
        local_dir = Path(args.local_dir) / repo_id.split("/")[1] if args.local_dir else None
        print(f"fetching {flag}: {spec}", flush=True)
        try:
            source = resolve_model(spec, what=f"--{flag}", cache_dir=args.cache_dir, local_dir=local_dir)
        except ModelSourceError as error:
            raise UserError(str(error)) from None
        folders[flag] = str(source.folder) if local_dir else spec
        print(f"  {flag}: {source.folder}", flush=True)
    print()
    print(sample_command(folders))
    return 0


def sample_command(folders: dict[str, str]) -> str:
    """The ``soraplan sample`` line that uses the fetched parts (Hub ids, or the --local_dir folders)."""
    model = folders.get("i2v") or folders.get("t2v")
    if model is None:
        return "# fetch a transformer (--i2v or --t2v) to sample"
    parts = ["soraplan sample", f"--model_path {shlex.quote(model)}"]
    if "i2v" not in folders:
        parts.append("--model_type t2v")
    vae = folders.get("vae")
    text_encoder = folders.get("text_encoder")
    parts += [f"--ae_path {shlex.quote(vae or '<WF-VAE: add --vae>')}",
              f"--text_encoder_name_1 {shlex.quote(text_encoder or '<mT5-XXL: add --text_encoder>')}"]
    if "caption_refiner" in folders:
        parts.append(f"--caption_refiner {shlex.quote(folders['caption_refiner'])}")
    if "i2v" in folders:
        parts += ["--conditional_pixel_values_path first_frame.png", "--mask_type i2v"]
    parts += ["--text_prompt 'a boat sails across a calm lake at sunset'", "--num_frames 93 --height 352 --width 640"]
    return " \\\n    ".join(parts)

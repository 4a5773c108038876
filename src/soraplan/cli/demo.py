"""``soraplan demo``: the embedded demo model (trained by ``scripts/demo/train_demo_model.sh`` on the
synthetic world) animates shipped examples, or your own image(s) / video, on CPU in about a minute.

Without inputs it runs three examples (image-to-video, first/last-frame transition, continuation of a
short clip) and writes one mp4 per example plus a contact sheet PNG (each row an example, every other
frame, conditioning frames marked with a white bar below them).

With ``--lora`` every example is made twice, without and with the adapters, side by side on the
contact sheet; an adapter shipped beside the model (``--lora diagonal``) brings examples of what it
teaches, which replace the model's own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..utils.text import counted
from .errors import UserError
from .options import (NOT_A_PIPELINE, add_cache_threshold, add_hub_options, add_lora_option, add_sampling_defaults,
                      check_cache_threshold, check_sampling_defaults, resolve_model_flag)

CONTACT_SCALE = 2  # the demo model works at 64x64: enlarge the contact sheet for viewing


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="animate examples (or your image/video) with the embedded demo model")
    p.add_argument("--pipeline", default=None, help="pipeline folder or Hub id (default: the embedded demo model)")
    p.add_argument("--fast", action="store_true", help="the embedded model's distilled student: one step, no "
                   "guidance pass (soraplan distill; 200x fewer transformer evaluations)")
    add_hub_options(p, "--pipeline")
    add_lora_option(p)
    p.add_argument("--output-dir", "--output_dir", dest="output_dir", default="outputs/demo")
    p.add_argument("--image", action="append", default=None,
                   help="conditioning image; once: image-to-video, twice: first/last-frame transition, "
                        "more: keyframes spread over the clip (or at --indices)")
    p.add_argument("--indices", default=None, help="comma-separated frame index of each --image")
    p.add_argument("--video", default=None, help="conditioning video: its frames start the clip (continuation)")
    p.add_argument("--prompt", default=None, help="what happens, e.g. 'a red circle moves to the right on a "
                   "black background' (needed with --image/--video; alone: text-to-video)")
    p.add_argument("--num_frames", type=int, default=17, help="pixel frames, 4k+1 (the model is trained on 17)")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    add_sampling_defaults(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample_method", default=None, help="the sampler, as `soraplan sample` (default: the "
                   "pipeline folder's own)")
    add_cache_threshold(p)
    p.add_argument("--fps", type=int, default=8)
    p.set_defaults(run=run)


def shipped_examples(folder: Path | None = None) -> list[dict]:
    """[{name, task, conditions: [paths], prompt}] from an examples folder (default: the one next to
    the model)."""
    from ..demo.assets import DEMO_EXAMPLES

    folder = folder or DEMO_EXAMPLES
    listing = folder / "examples.json"
    if not listing.is_file():
        raise UserError(f"the demo examples are missing ({listing}); reinstall soraplan")
    examples = json.loads(listing.read_text())
    for example in examples:
        example["conditions"] = [str(folder / name) for name in example["conditions"]]
    return examples


def adapter_examples(loras: list[tuple[Path, float]]) -> Path | None:
    """The examples folder of the first adapter that brings its own (an examples.json beside its weights)."""
    for file, _ in loras:
        if (file.parent / "examples.json").is_file():
            return file.parent
    return None


def user_example(args) -> dict:
    """Your inputs: images (i2v / transition / keyframes), a video (continuation) or only a prompt (t2v)."""
    if args.image and args.video:
        raise UserError("give --image(s) or --video, not both")
    if not args.prompt:
        raise UserError("--image/--video need --prompt, e.g. --prompt 'a red circle moves to the right on a black background'")
    if args.indices and not args.image:
        raise UserError("--indices gives the frame of each --image")
    conditions = [args.video] if args.video else list(args.image or [])
    for path in conditions:
        if not Path(path).is_file():
            raise UserError(f"{path} does not exist")
    indices = None
    if args.indices:
        try:
            indices = [int(i) for i in args.indices.split(",")]
        except ValueError:
            raise UserError(f"--indices takes comma-separated integers, got {args.indices!r}") from None
    elif args.image and len(args.image) > 2:
        indices = np.linspace(0, args.num_frames - 1, len(args.image)).round().astype(int).tolist()
    task = "continuation" if args.video else {0: "t2v", 1: "i2v", 2: "transition"}.get(len(conditions), "keyframes")
    return {"name": "yours", "task": task, "conditions": conditions, "prompt": args.prompt, "indices": indices}


def contact_sheet(rows: list[tuple[np.ndarray, list[int]]], step: int = 2) -> np.ndarray:
    """(H', W', 3) uint8: one row per video (T, H, W, 3), every ``step``-th frame; given frames get a bar."""
    pad, bar = 2, 3
    tiles = []
    for video, given in rows:
        picks = list(range(0, len(video), step))
        if picks[-1] != len(video) - 1:
            picks.append(len(video) - 1)
        height, width = video.shape[1:3]
        row = np.full((height + bar + pad, len(picks) * (width + pad) + pad, 3), 24, np.uint8)
        for k, t in enumerate(picks):
            x = pad + k * (width + pad)
            row[:height, x:x + width] = video[t]
            if t in given:
                row[height + 1:height + bar, x:x + width] = 255
        tiles.append(row)
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=24) for t in tiles]
    sheet = np.concatenate([np.full((pad, width, 3), 24, np.uint8)] + tiles)
    return sheet.repeat(CONTACT_SCALE, axis=0).repeat(CONTACT_SCALE, axis=1)


def run(args) -> int:
    import diffusers
    import transformers
    from PIL import Image

    from ..data.video_io import write_video
    from ..demo.assets import demo_pipeline_path, demo_student_path
    from ..pipelines import load_pipeline
    from ..pipelines.lora import apply_loras, resolve_lora_specs
    from ..schedulers import method_name, scheduler_for

    if (args.num_frames - 1) % 4 or args.num_frames < 1:
        raise UserError(f"--num_frames {args.num_frames} is not 4k+1; use e.g. {max(1, (args.num_frames - 1) // 4 * 4 + 1)}")
    if args.height % 16 or args.width % 16 or args.height <= 0 or args.width <= 0:
        raise UserError(f"--height/--width must be positive multiples of 16, got {args.height}x{args.width}")
    check_sampling_defaults(args)
    check_cache_threshold(args)
    if args.fast and args.pipeline:
        raise UserError("--fast picks the embedded demo model's student; with --pipeline give the student's "
                        "folder itself (soraplan distill writes it to OUTPUT_DIR/pipeline)")
    try:
        loras = resolve_lora_specs(args.lora)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    examples = ([user_example(args)] if (args.image or args.video or args.prompt)
                else shipped_examples(adapter_examples(loras)))
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    started = time.time()
    try:
        source = resolve_model_flag(args.pipeline, "--pipeline", args.subfolder, args.revision,
                                    unless_pipeline=NOT_A_PIPELINE)
        folder = source.folder if source else demo_student_path() if args.fast else demo_pipeline_path()
        pipe = load_pipeline(str(folder))
        pipe.scheduler = scheduler_for(pipe.scheduler, args.sample_method)
        args.sample_method = method_name(pipe.scheduler)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise UserError(str(error)) from None
    pipe.set_progress_bar_config(disable=True)  # one line per example says what was made and how fast
    pipe.enable_step_cache(args.cache_threshold)
    steps, _ = pipe.sampling_settings(args.num_sampling_steps, args.guidance_scale)
    print(f"model       {folder} ({sum(p.numel() for p in pipe.transformer.parameters()):,}-parameter I2V "
          f"transformer, loaded in {time.time() - started:.1f} s; {counted(steps, 'step')}, "
          f"{pipe.describe_guidance(args.guidance_scale)})")
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # without adapters one pass; with them a pass without and one with (merged), each example's two
    # videos in adjacent contact-sheet rows
    passes = [("", False)] if not loras else [("_without_lora", False), ("_with_lora", True)]
    rows: dict[tuple[int, int], tuple[np.ndarray, list[int]]] = {}
    for number, (suffix, with_loras) in enumerate(passes):
        if with_loras:
            try:
                names = apply_loras(pipe, loras, fuse=True)
            except (FileNotFoundError, ValueError, OSError) as error:
                raise UserError(str(error)) from None
            print(f"lora        {', '.join(f'{n} at {scale:g}' for n, (_, scale) in zip(names, loras))} (merged)")
        for index, example in enumerate(examples):
            start = time.time()
            try:
                result = pipe(example["prompt"], conditions=example["conditions"], condition_indices=example.get("indices"),
                              num_frames=args.num_frames, height=args.height, width=args.width,
                              num_inference_steps=steps, guidance_scale=args.guidance_scale,
                              generator=torch.Generator().manual_seed(args.seed))
            except (ValueError, OSError) as error:
                raise UserError(f"{example['name']}: {error}") from None
            video = result.videos[0]
            path = out_dir / f"{example['name']}_{example['task']}{suffix}.mp4"
            write_video(path, video, fps=args.fps)
            rows[index, number] = (video, result.given_frames)
            cache = pipe.step_cache_stats
            evaluations = f", {cache.computed}/{cache.calls} evaluations" if cache is not None else ""
            print(f"{example['task']:12s} {path}  ({time.time() - start:.1f} s{evaluations}) \"{example['prompt']}\"")
    sheet_path = out_dir / "contact_sheet.png"
    partial = out_dir / ".contact_sheet.partial.png"
    Image.fromarray(contact_sheet([rows[key] for key in sorted(rows)])).save(partial)
    os.replace(partial, sheet_path)
    labels = [e["task"] + suffix.replace("_", " ") for e in examples for suffix, _ in passes]
    print(f"contact     {sheet_path} (rows: {', '.join(labels)}; white bar = given frame)")
    print(f"done in {time.time() - started:.1f} s on {torch.get_num_threads()} CPU threads")
    return 0

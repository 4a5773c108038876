"""``soraplan eval``: measure a pipeline on held-out clips of the synthetic world (soraplan.demo.evaluate)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .errors import UserError
from .options import add_cache_threshold, check_cache_threshold

# the targets the shipped demo model must meet (issue #7); --check turns a miss into exit status 1
TARGETS = {"i2v_first_frame_psnr": 25.0, "i2v_direction_accuracy": 0.8, "transition_last_frame_psnr": 22.0}
HELD_OUT_SEED = 2  # the demo model trains on seed 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="measure a pipeline on held-out clips of the synthetic world")
    p.add_argument("--pipeline", default=None, help="pipeline folder (default: the embedded demo model)")
    p.add_argument("--data", default=None, help="data.txt of a world from `soraplan data synth` (default: "
                   f"--clips clips of the world with seed {HELD_OUT_SEED}, never trained on, in a temporary folder)")
    p.add_argument("--clips", type=int, default=32, help="held-out clips (each is used for every task)")
    p.add_argument("--tasks", default="i2v,transition,continuation", help="comma-separated subset")
    p.add_argument("--num_sampling_steps", type=int, default=100)
    p.add_argument("--guidance_scale", type=float, default=7.5)
    p.add_argument("--sample_method", default="EulerAncestralDiscrete")
    p.add_argument("--seed", type=int, default=0)
    add_cache_threshold(p)
    p.add_argument("--output", default=None, help="write every clip's numbers and the summary to this JSON file")
    p.add_argument("--check", action="store_true", help="exit 1 when a target of the shipped model is missed")
    p.set_defaults(run=run)


def format_summary(summary: dict) -> str:
    lines = [f"{'metric':34s} {'value':>8s}  target"]
    for key, value in summary.items():
        if key == "clips" or value is None:
            continue
        shown = f"{100 * value:7.1f}%" if key.endswith("accuracy") else f"{value:8.2f}"
        target = TARGETS.get(key)
        target_text = "" if target is None else (f">= {100 * target:.0f}%" if key.endswith("accuracy") else f">= {target:g}")
        lines.append(f"{key:34s} {shown}  {target_text}")
    return "\n".join(lines)


def run(args) -> int:
    import diffusers
    import transformers

    from ..demo.assets import demo_pipeline_path
    from ..demo.evaluate import evaluate
    from ..demo.world import write_world
    from ..pipelines import load_pipeline
    from ..schedulers import build_scheduler

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    unknown = set(tasks) - {"i2v", "transition", "continuation"}
    if unknown or not tasks:
        raise UserError(f"--tasks takes i2v, transition, continuation; got {args.tasks!r}")
    if args.clips < 1 or args.num_sampling_steps < 1:
        raise UserError("--clips and --num_sampling_steps must be at least 1")
    check_cache_threshold(args)
    if args.data is not None and not Path(args.data).is_file():
        raise UserError(f"--data {args.data} does not exist; make a world with `soraplan data synth -o DIR`")
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    try:
        folder = args.pipeline or demo_pipeline_path()
        pipe = load_pipeline(str(folder), scheduler=build_scheduler(args.sample_method))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise UserError(str(error)) from None
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_step_cache(args.cache_threshold)
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = write_world(scratch, args.clips, seed=HELD_OUT_SEED)
        try:
            result = evaluate(pipe, data, clips=args.clips, num_inference_steps=args.num_sampling_steps,
                              guidance_scale=args.guidance_scale, seed=args.seed, tasks=tasks,
                              progress=lambda done, total: print(f"\rclip {done}/{total}", end="", flush=True))
        except (ValueError, KeyError) as error:
            raise UserError(f"cannot evaluate on {data}: {error}") from None
    print()
    summary = result.summary()
    print(format_summary(summary))
    cache = f", step cache {args.cache_threshold}" if args.cache_threshold else ""
    print(f"{summary['clips']} clips, {args.sample_method} {args.num_sampling_steps} steps, guidance "
          f"{args.guidance_scale}{cache}, {time.time() - started:.0f} s")
    if args.output:
        partial = Path(args.output).with_name(f".{Path(args.output).name}.partial")
        partial.write_text(json.dumps({"summary": summary, "rows": result.rows}, indent=1))
        os.replace(partial, args.output)
    missed = [k for k, target in TARGETS.items() if summary.get(k) is not None and summary[k] < target]
    if args.check and missed:
        print(f"missed targets: {', '.join(missed)}")
        return 1
    return 0

"""A distilled student against its teacher: every `soraplan eval` metric, evaluations and seconds per video.

Rows (one run, the same held-out clips, seeds and machine for all):

* the teacher as shipped: Euler-Ancestral, 100 steps, classifier-free guidance at its defaults (per task
  where its pipeline has task defaults; 200 evaluations);
* the teacher with fast solvers at 8 and 16 evaluations and at every count a student row has (2, 4, 8):
  each solver once with guidance (half as many steps: two passes a step) and once without (guidance 1,
  one pass a step), the best teacher row of each count marked (by the mean of the rate metrics, then
  the PSNRs). The rows without guidance are there because a teacher that does not need guidance at few
  steps is the student's real rival at its own evaluation count (the demo teacher is one: README);
* the student (``soraplan distill``) at 2, 4 and 8 evaluations (one per step, no guidance pass).

Evaluations are counted by a hook on the transformer (a batch of two, guidance's halves, counts two);
seconds per video are wall time of the whole call (text, VAE encode, sampling, VAE decode), and the
ratio column divides the teacher's 200-evaluation row by each. The targets of the distillation issue
are checked at the end for each student row (``--check`` exits 1 when no student row meets them all).

    python bench/distill.py --student runs/demo_student/pipeline            # 64 + 64 clips
    python bench/distill.py --student ... --clips 8 --solvers DPMSolverMultistep   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SOLVERS = ("DPMSolverMultistep", "DPMSolverMultistepSDE", "DDIM", "EulerAncestralDiscrete")
RATES = ("i2v_direction_rate", "i2v_shape_and_colour_kept_rate", "transition_direction_rate",
         "transition_shape_and_colour_kept_rate", "continuation_direction_rate",
         "continuation_shape_and_colour_kept_rate")
PSNRS = ("i2v_first_psnr", "transition_last_psnr", "continuation_given_psnr")


class EvaluationCounter:
    """Counts transformer evaluations (samples through the model) during a run."""

    def __init__(self, transformer):
        self.count = 0
        self._handle = transformer.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.count += int(args[0].shape[0])

    def close(self):
        self._handle.remove()


def score(summary: dict) -> tuple[float, float]:
    """(mean rate, mean PSNR) over both clip sets: how rows at one evaluation count are ranked."""
    rates = [s[k] for s in summary.values() for k in RATES if k in s]
    psnrs = [s[k] for s in summary.values() for k in PSNRS if k in s]
    return float(np.mean(rates)), float(np.mean(psnrs))


def run_row(pipe, worlds: dict, clips: int, steps: int, guidance: float | None, seed: int) -> dict:
    from soraplan.demo.evaluate import evaluate

    counter = EvaluationCounter(pipe.transformer)
    started, videos, summary = time.perf_counter(), 0, {}
    try:
        for name, data in worlds.items():
            result = evaluate(pipe, data, clips=clips, num_inference_steps=steps, guidance_scale=guidance, seed=seed)
            summary[name] = result.summary()
            videos += len(result.rows)
    finally:
        counter.close()
    seconds = time.perf_counter() - started
    return {"summary": summary, "evaluations": counter.count / videos, "seconds_per_video": seconds / videos}


def check_targets(rows: list[dict]) -> dict[str, list[str]]:
    """The issue's targets, for each student row at <= 8 evaluations: within 5 points of the teacher-200 on
    every rate, within 1 dB on every PSNR, >= 10x faster per video, and at least as good as the best teacher
    solver at the same evaluation count on every metric. The targets ask for *a* student setting that meets
    them all (a user samples at one step count), so each row gets its own list of misses."""
    teacher = rows[0]
    verdicts = {}
    for row in rows:
        if row["kind"] != "student" or row["evaluations"] > 8:
            continue
        missed = verdicts.setdefault(row["name"], [])
        for clip_set, summary in row["summary"].items():
            base = teacher["summary"][clip_set]
            for key in RATES:
                if key in summary and summary[key] < base[key] - 0.05:
                    missed.append(f"{clip_set} {key} {summary[key]:.1%} < teacher {base[key]:.1%} - 5")
            for key in PSNRS:
                if key in summary and summary[key] < base[key] - 1.0:
                    missed.append(f"{clip_set} {key} {summary[key]:.2f} < teacher {base[key]:.2f} - 1 dB")
        if row["speedup"] < 10:
            missed.append(f"only {row['speedup']:.1f}x faster than the teacher (target 10x)")
        rivals = [r for r in rows if r.get("best") and round(r["evaluations"]) == round(row["evaluations"])]
        for rival in rivals:
            for clip_set, summary in row["summary"].items():
                for key in RATES + PSNRS:
                    if key in summary and summary[key] < rival["summary"][clip_set][key]:
                        missed.append(f"{clip_set} {key} below {rival['name']}")
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=None, help="teacher pipeline folder (default: the embedded demo model)")
    parser.add_argument("--student", required=True, help="student pipeline folder (soraplan distill's pipeline/)")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips per set")
    parser.add_argument("--sets", default="world,drawn")
    parser.add_argument("--solvers", default=",".join(SOLVERS),
                        help="teacher solvers at 8 and 16 evaluations and at the student's counts")
    parser.add_argument("--teacher_evaluations", default="8,16",
                        help="evaluation counts of the teacher's solver rows besides the student's own")
    parser.add_argument("--student_steps", default="2,4,8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="JSON of every row")
    parser.add_argument("--check", action="store_true", help="exit 1 when no student row meets every target")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import diffusers

    from soraplan.cli.evaluate import HELD_OUT_SEED
    from soraplan.demo.assets import demo_pipeline_path
    from soraplan.demo.world import write_world
    from soraplan.pipelines import load_pipeline
    from soraplan.schedulers import build_scheduler
    from soraplan.utils.text import counted

    diffusers.utils.logging.disable_progress_bar()
    teacher = load_pipeline(args.teacher or str(demo_pipeline_path()))
    student = load_pipeline(args.student)
    for pipe in (teacher, student):
        pipe.set_progress_bar_config(disable=True)
    teacher_steps, _ = teacher.sampling_settings()
    guidance_label = teacher.describe_guidance().replace("guidance ", "CFG ")  # "CFG 3 (transition 2)"
    shipped_scheduler = teacher.scheduler
    student_steps = [int(s) for s in args.student_steps.split(",") if s]
    counts = sorted({*student_steps, *(int(n) for n in args.teacher_evaluations.split(",") if n)})
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        worlds = {name: write_world(Path(scratch) / name, args.clips, seed=HELD_OUT_SEED, style=name)
                  for name in args.sets.split(",")}

        def add(name, kind, pipe, steps, guidance, **extra):
            row = {"name": name, "kind": kind, "steps": steps, "guidance": guidance, **extra,
                   **run_row(pipe, worlds, args.clips, steps, guidance, args.seed)}
            rows.append(row)
            print(f"{name:44s} {row['evaluations']:6.1f} evaluations  {row['seconds_per_video']:7.2f} s/video",
                  flush=True)

        # the teacher guides as it samples by default: each task at its own scale (guidance None)
        add(f"teacher Euler-A {teacher_steps} steps, {guidance_label}", "teacher", teacher, teacher_steps, None)
        for evaluations in counts:
            for solver in [s for s in args.solvers.split(",") if s]:
                teacher.scheduler = build_scheduler(solver)
                if evaluations % 2 == 0:  # guided: two evaluations a step
                    add(f"teacher {solver} {counted(evaluations // 2, 'step')}, CFG", "solver", teacher,
                        evaluations // 2, None, solver=solver)
                add(f"teacher {solver} {counted(evaluations, 'step')}, no CFG", "solver", teacher, evaluations, 1.0,
                    solver=solver)
        teacher.scheduler = shipped_scheduler
        for steps in student_steps:
            add(f"student {counted(steps, 'step')}", "student", student, steps, None)  # its own default (1: built in)

    base = rows[0]["seconds_per_video"]
    for row in rows:
        row["speedup"] = base / row["seconds_per_video"]
    for evaluations in counts:
        solvers = [r for r in rows if r["kind"] == "solver" and round(r["evaluations"]) == evaluations]
        if solvers:
            max(solvers, key=lambda r: score(r["summary"]))["best"] = True

    sets = list(rows[0]["summary"])
    keys = [k for k in (*PSNRS, *RATES) if k in rows[0]["summary"][sets[0]]]
    print()
    print(f"{'row':46s} {'evals':>5s} {'s/video':>7s} {'ratio':>6s}  " + "  ".join(
        f"{k.replace('_rate', '').replace('continuation', 'cont'):>18s}" for k in keys))
    for row in rows:
        cells = []
        for key in keys:
            values = [row["summary"][s][key] for s in sets]
            text = " / ".join(f"{v:.1f}" if "psnr" in key else f"{100 * v:.0f}" for v in values)
            cells.append(f"{text:>18s}")
        mark = "*" if row.get("best") else " "
        print(f"{mark}{row['name']:45s} {row['evaluations']:5.0f} {row['seconds_per_video']:7.2f} "
              f"{row['speedup']:5.1f}x  " + "  ".join(cells))
    print(f"(values: {' / '.join(sets)}; rates in %, PSNR in dB; * the best teacher solver at its evaluation count; "
          f"{args.clips} clips per set)")
    verdicts = check_targets(rows)
    print("targets:")
    for name, missed in verdicts.items():
        print(f"  {name}: " + ("all met" if not missed else "missed: " + "; ".join(missed)))
    met = [name for name, missed in verdicts.items() if not missed]
    print("targets " + (f"met by: {', '.join(met)}" if met else "met by no student row"))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end seconds per video with each acceleration on and off.

Two models: the embedded demo model (i2v of its first shipped example, 17 x 64 x 64) and the released
2B/122 architecture with random weights at a CPU-feasible size (9 x 64 x 64, fewer steps; a small random
T5 with the release's 4096-wide states stands in for mT5-XXL). Every row runs in its own process (CFG
parallel: two processes under torchrun, splitting this machine's threads between them) and reports
seconds per video (median of --repeats), the speed-up against the first row of its model measured in
the same run,
transformer evaluations, peak memory (CPU: RSS above the loaded model) and the PSNR of the video
against that first row's (for the accelerations that change the result).

    python bench/sample.py                      # both models, CPU
    python bench/sample.py --models demo        # the demo model only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# name -> what it changes; each model's first row is its baseline
ROWS = {
    "demo": [
        ("Euler-A 100 steps", {}),
        ("+ step cache 0.4", {"cache": 0.4}),
        ("+ step cache 0.8", {"cache": 0.8}),
        ("SDE-DPM-Solver++ 25 steps", {"method": "DPMSolverMultistepSDE", "steps": 25}),
        ("SDE-DPM++ 25 + cache 0.4", {"method": "DPMSolverMultistepSDE", "steps": 25, "cache": 0.4}),
        ("+ CFG parallel (2 procs)", {"cfg_parallel": True}),
        ("+ save memory (VAE chunks)", {"save_memory": True}),
        ("+ keep freed memory", {"keep_freed_memory": True}),
    ],
    "2b": [
        ("Euler-A 8 steps", {"steps": 8}),
        ("+ step cache 1.5", {"steps": 8, "cache": 1.5}),  # 8 big steps: a larger threshold
        ("+ CFG parallel (2 procs)", {"steps": 8, "cfg_parallel": True}),
    ],
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_2b_pipeline():
    """The release architecture (2B transformer, WF-VAE D8 widths) with random weights, and a small T5."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    from soraplan.models import WFVAE, build_inpaint
    from soraplan.pipelines import OpenSoraInpaintPipeline
    from soraplan.schedulers import build_scheduler

    torch.manual_seed(0)
    transformer = build_inpaint("2B/122").eval()
    with torch.no_grad():  # the conditioning branches start at zero; make them count
        for module in (transformer.pos_embed_masked_hidden_states[1], transformer.pos_embed_mask[1]):
            module.weight.normal_(0, 0.02)
    vae = WFVAE(latent_dim=8, base_channels=128, encoder_energy_flow_hidden_size=128,
                decoder_energy_flow_hidden_size=128, norm_type="layernorm", t_interpolation="trilinear").eval()
    text = T5EncoderModel(T5Config(vocab_size=384, d_model=4096, d_kv=64, d_ff=256, num_layers=1, num_heads=8)).eval()
    return OpenSoraInpaintPipeline(transformer, vae, text, ByT5Tokenizer(model_max_length=64), build_scheduler())


def worker(args) -> None:
    from soraplan.cli.demo import shipped_examples
    from soraplan.pipelines import load_pipeline
    from soraplan.schedulers import build_scheduler

    row = json.loads(args.row)
    if row.get("keep_freed_memory"):  # what SORAPLAN_KEEP_FREED_MEMORY=1 makes the soraplan command do
        from soraplan.utils.memory import keep_freed_memory

        keep_freed_memory()
    rank = 0
    if row.get("cfg_parallel"):
        torch.distributed.init_process_group("gloo")
        rank = torch.distributed.get_rank()
    if args.model == "demo":
        from soraplan.demo.assets import DEMO_PIPELINE

        pipe = load_pipeline(str(DEMO_PIPELINE))
    else:
        pipe = build_2b_pipeline()
    pipe.scheduler = build_scheduler(row.get("method", "EulerAncestralDiscrete"))
    pipe.set_progress_bar_config(disable=True)
    if row.get("cfg_parallel"):
        from soraplan.parallel import sampling_layout

        pipe.enable_cfg_parallel(sampling_layout(sp=False, cfg_parallel=True).cfg)
    pipe.enable_step_cache(row.get("cache"))
    if row.get("save_memory"):
        pipe.vae.enable_tiling(True, t_chunk_enc=8, t_chunk_dec=4)
    example = shipped_examples()[0]
    kwargs = dict(conditions=example["conditions"], num_frames=17 if args.model == "demo" else 9, height=64,
                  width=64, guidance_scale=7.5, max_sequence_length=64)
    baseline = peak_rss_mb()  # the loaded pipeline; the peak above it is sampling's own
    pipe(example["prompt"], num_inference_steps=2, generator=torch.Generator().manual_seed(0), **kwargs)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        video = pipe(example["prompt"], num_inference_steps=row.get("steps", 100),
                     generator=torch.Generator().manual_seed(0), **kwargs).videos
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    stats = pipe.step_cache_stats
    if rank == 0:
        np.save(args.video_out, video)
        print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb() - baseline,
                          "evaluations": stats.computed if stats else row.get("steps", 100)}))
    if row.get("cfg_parallel"):
        torch.distributed.destroy_process_group()


def run_row(args, model: str, row: dict, video_out: Path) -> dict:
    repeats = args.repeats if model == "demo" else 1  # a 2B video takes minutes on a CPU
    worker_args = [__file__, "--worker", "--model", model, "--row", json.dumps(row), "--video_out", str(video_out),
                   "--repeats", str(repeats)]
    env = dict(os.environ)
    if row.get("cfg_parallel"):
        threads = max(torch.get_num_threads() // 2, 1)
        env["OMP_NUM_THREADS"] = str(threads)
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *worker_args]
    else:
        command = [sys.executable, *worker_args]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        lines = [line for line in result.stderr.strip().splitlines() if "Error" in line] or ["failed"]
        return {"error": lines[-1][:160]}
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["demo", "2b"], choices=list(ROWS))
    parser.add_argument("--repeats", type=int, default=3, help="timed videos per demo row (median); 2B rows: 1")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--video_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from soraplan.demo.evaluate import psnr

    print(f"end-to-end sampling, cpu, {torch.get_num_threads()} threads, CFG 7.5, i2v of the first demo example")
    print(f"{'model':>5} {'setting':>28} {'s/video':>8} {'speed-up':>8} {'evals':>6} {'peak MB':>8} {'PSNR dB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            base = None
            for index, (name, row) in enumerate(ROWS[model]):
                video_path = Path(tmp) / f"{model}_{index}.npy"
                r = run_row(args, model, row, video_path)
                if "error" in r:
                    print(f"{model:>5} {name:>28}  failed: {r['error']}")
                    continue
                video = np.load(video_path)
                base = base or {**r, "video": video}
                quality = "-" if index == 0 else f"{psnr(video, base['video']):.1f}"
                print(f"{model:>5} {name:>28} {r['seconds']:>8.2f} {base['seconds'] / r['seconds']:>7.2f}x "
                      f"{r['evaluations']:>6} {r['peak_mb']:>8.0f} {quality:>8}")


if __name__ == "__main__":
    main()

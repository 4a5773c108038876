"""Our v1.3 inpaint transformer against the reference implementation: same weights, same inputs.

For every latent grid (token count) and dtype it times the forward pass (inference) and, with
--backward, forward+backward (training), for the reference and for ours, and reports the speed-up
(reference seconds / our seconds), the peak-memory ratio and the largest output difference. Every
timing runs in its own process (so peak memory is its own), each implementation --rounds times in
turns, the fastest run counting; the weights are written once and loaded by both implementations (the
key names are the same). Default size: the released 32-layer depth and
Skiparse k=4 schedule at a CPU-sized width; --release uses the 2B width (GPU).

    python bench/transformer.py --reference path/to/Open-Sora-Plan            # CPU fp32
    python bench/transformer.py --reference ... --device cuda --dtypes bf16 fp16 --release --backward
    python bench/transformer.py                                                 # ours only

"kernels s" is the part of a step spent inside matrix products and attention kernels (profiled
separately from the timed steps), the work both implementations must do at equal output. For our rows,
"ceiling" = reference seconds / our kernel seconds: the largest speed-up any implementation calling the
same PyTorch kernels could reach.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TEXT_TOKENS = 512  # the release pads every prompt to 512 tokens
PROMPT_TOKENS = (120, 40)  # real tokens of the two prompts


def bench_config(release: bool, layers: int) -> dict:
    from soraplan.models.configs import TRANSFORMER_SIZES

    config = dict(TRANSFORMER_SIZES["2B/122"], num_layers=layers)
    if not release:  # same depth and sparsity, 1/12 of the width: CPU-sized
        config.update(num_attention_heads=4, attention_head_dim=48, caption_channels=256)
    config["cross_attention_dim"] = config["num_attention_heads"] * config["attention_head_dim"]
    return config


def parse_grid(text: str) -> tuple[int, int, int]:
    frames, height, width = (int(v) for v in text.lower().split("x"))
    return frames, height, width


def make_inputs(config: dict, grid, device, dtype, batch: int = 2) -> dict:
    """Deterministic inputs in the reference's calling convention (masks included, as its pipeline passes)."""
    generator = torch.Generator().manual_seed(1)
    frames, height, width = grid
    channels = 2 * config["in_channels"] + 4
    x = torch.randn(batch, channels, frames, height, width, generator=generator)
    text = torch.randn(batch, 1, TEXT_TOKENS, config["caption_channels"], generator=generator)
    text_mask = torch.zeros(batch, 1, TEXT_TOKENS, dtype=torch.long)
    for sample in range(batch):
        text_mask[sample, :, :PROMPT_TOKENS[sample % 2]] = 1
    return dict(
        hidden_states=x.to(device, dtype),
        timestep=torch.tensor([999.0, 421.5][:batch], device=device),
        encoder_hidden_states=text.to(device, dtype),
        attention_mask=torch.ones(batch, frames, height, width, device=device, dtype=dtype),
        encoder_attention_mask=text_mask.to(device),
    )


def build(impl: str, config: dict, weights: Path, reference: str | None, device: str):
    from safetensors.torch import load_file

    if impl.startswith("reference"):
        sys.path.insert(0, str(HERE))
        from reference import load_reference

        cls, _ = load_reference(reference, device=device, cpu_attention="math" if "math" in impl else "default")
        model = cls(**config)
    else:
        from soraplan.models import OpenSoraInpaint

        model = OpenSoraInpaint(**config)
    model.load_state_dict(load_file(weights), strict=True)
    if "fused" in impl:
        from soraplan.acceleration import fuse_qkv

        fuse_qkv(model)
    if "compile" in impl:
        model.compile_repeated_blocks()
    return model


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


KERNEL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product",
              "aten::_flash_attention", "aten::_efficient_attention")


def kernel_seconds(step, device: torch.device, repeats: int) -> float:
    """Seconds per step inside matrix-product and attention kernels (self time over ``repeats`` profiled steps)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step()
        sync(device)
    micros = sum(e.self_device_time_total if cuda else e.self_cpu_time_total
                 for e in prof.key_averages() if e.key.startswith(KERNEL_OPS))
    return micros / 1e6 / repeats


def worker(args) -> None:
    if args.keep_freed_memory:
        from soraplan.utils.memory import keep_freed_memory

        keep_freed_memory()
    config = json.loads(Path(args.config_file).read_text())
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    model = build(args.impl, config, Path(args.weights), args.reference, args.device).to(device, dtype)
    inputs = make_inputs(config, parse_grid(args.grid), device, dtype)
    baseline = peak_rss_mb()  # model and inputs in memory; the peak above it is the forward's own
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        if args.mode == "forward":
            with torch.no_grad():
                model(**inputs, return_dict=False)
        else:
            model(**inputs, return_dict=False)[0].float().square().mean().backward()
            model.zero_grad(set_to_none=True)

    model.train(args.mode != "forward")
    step()  # warm-up (and compilation)
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb() - baseline
    kernels = kernel_seconds(step, device, max(1, args.repeats // 2))
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": peak, "kernel_seconds": kernels}))


def check(args) -> None:
    """Largest |reference - ours| of the forward output, in fp32."""
    config = json.loads(Path(args.config_file).read_text())
    device = torch.device(args.device)
    inputs = make_inputs(config, parse_grid(args.grid), device, torch.float32)
    outputs = []
    for impl in ("reference", "ours"):
        model = build(impl, config, Path(args.weights), args.reference, args.device).to(device).eval()
        with torch.no_grad():
            outputs.append(model(**inputs, return_dict=False)[0])
    print(json.dumps({"max_abs_diff": (outputs[0] - outputs[1]).abs().max().item(),
                      "output_abs_mean": outputs[0].abs().mean().item()}))


def run_worker(args, **extra) -> dict:
    command = [sys.executable, __file__, "--device", args.device, "--config_file", args.config_file,
               "--weights", args.weights, "--repeats", str(args.repeats)]
    if args.reference:
        command += ["--reference", args.reference]
    if args.keep_freed_memory:
        command.append("--keep_freed_memory")
    for key, value in extra.items():
        command += [f"--{key}"] + ([] if value is True else [str(value)])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        lines = result.stderr.strip().splitlines() or ["no output"]
        return {"error": lines[-1][:160]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_interleaved(args, impls: list[str], **worker_args) -> list[tuple[str, dict]]:
    """Every implementation --rounds times, in turns (A B A B ...), each run in a fresh process.

    A shared machine slows down in bursts that can last a whole run; taking each implementation's
    fastest round (of medians) keeps one burst from deciding a ratio."""
    runs = {impl: [] for impl in impls}
    for _ in range(args.rounds):
        for impl in impls:
            runs[impl].append(run_worker(args, impl=impl, **worker_args))
    rows = []
    for impl in impls:
        good = [r for r in runs[impl] if "error" not in r]
        if not good:
            rows.append((impl, runs[impl][0]))
            continue
        rows.append((impl, {"seconds": min(r["seconds"] for r in good),
                            "kernel_seconds": min(r["kernel_seconds"] for r in good),
                            "peak_mb": max(r["peak_mb"] for r in good)}))
    return rows


def write_weights(config: dict, folder: Path) -> tuple[str, str]:
    """Random weights (every parameter, zero-initialised branches included) and the config, on disk."""
    from safetensors.torch import save_file

    from soraplan.models import OpenSoraInpaint

    model = OpenSoraInpaint(**config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    config_file, weights = folder / "config.json", folder / "weights.safetensors"
    config_file.write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    return str(config_file), str(weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", help="Open-Sora-Plan checkout at tag v1.3.1 (omit: ours only)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=None, help="default fp32 on CPU, bf16 fp16 on CUDA")
    parser.add_argument("--grids", nargs="+", default=None,
                        help="latent T x H x W grids (tokens = T*H*W/4); default by device")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--release", action="store_true", help="the released 2B width (24 heads x 96)")
    parser.add_argument("--backward", action="store_true", help="also time forward+backward")
    parser.add_argument("--compile", action="store_true", help="also time ours with its blocks under torch.compile")
    parser.add_argument("--fuse_qkv", action="store_true", help="also time ours with fused q/k/v projections")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per run (median)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per implementation, taken in turns; the fastest run counts")
    parser.add_argument("--keep_freed_memory", action="store_true",
                        help="every worker (reference and ours) keeps freed memory (soraplan.utils.memory), "
                             "as SORAPLAN_KEEP_FREED_MEMORY=1 soraplan ... does; default: the C library's defaults")
    # worker-only
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--grid", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config_file", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check:
        return check(args)
    if args.impl:
        return worker(args)

    cuda = args.device.startswith("cuda")
    dtypes = args.dtypes or (["bf16", "fp16"] if cuda else ["fp32"])
    grids = args.grids or (["24x44x80", "12x44x80"] if cuda else ["5x16x16", "9x16x24", "13x24x32"])
    modes = ["forward"] + (["forward+backward"] if args.backward else [])
    ours = ["ours"] + (["ours+fused"] if args.fuse_qkv else []) + (["ours+compile"] if args.compile else [])
    config = bench_config(args.release, args.layers)
    with tempfile.TemporaryDirectory() as tmp:
        args.config_file, args.weights = write_weights(config, Path(tmp))
        hidden = config["num_attention_heads"] * config["attention_head_dim"]
        print(f"transformer bench: {args.device}, {torch.get_num_threads()} threads, {config['num_layers']} layers, "
              f"hidden {hidden}, Skiparse k={config['sparse_n']}, batch 2 (CFG), median of {args.repeats} steps, "
              f"fastest of {args.rounds} runs taken in turns, "
              + ("freed memory kept (every run)" if args.keep_freed_memory else "the C library's allocator defaults"))
        print(f"{args.device}: prompts of {PROMPT_TOKENS} tokens padded to {TEXT_TOKENS}; speed-up and memory "
              "ratio against the reference (PyTorch's default SDPA kernel choice)"
              + ("; reference-math: its attention on the exact math kernel, as the parity fixtures ran it"
                 if args.reference and not cuda else ""))
        print(f"{'grid':>10} {'tokens':>6} {'dtype':>5} {'mode':>16} {'impl':>14} {'seconds':>8} {'peak MB':>8} "
              f"{'speed-up':>8} {'mem x':>6} {'kernels s':>9} {'ceiling':>8}")
        diffs = []
        for grid in grids:
            tokens = parse_grid(grid)[0] * parse_grid(grid)[1] * parse_grid(grid)[2] // 4
            if args.reference:
                diffs.append((grid, run_worker(args, check=True, grid=grid)))
            for dtype in dtypes:
                for mode in modes:
                    impls = (["reference"] + (["reference-math"] if not cuda else []) if args.reference else []) + ours
                    rows = measure_interleaved(args, impls, grid=grid, dtype=dtype, mode=mode)
                    base = rows[0][1] if args.reference else None
                    for impl, r in rows:
                        head = f"{grid:>10} {tokens:>6} {dtype:>5} {mode:>16} {impl:>14}"
                        if "error" in r:
                            print(f"{head}  failed: {r['error']}")
                            continue
                        ratio = speed = ceiling = ""
                        if base and "error" not in base:
                            speed = f"{base['seconds'] / r['seconds']:.2f}x"
                            # small runs reuse memory the allocator already holds: no ratio below 10 MB
                            ratio = f"{r['peak_mb'] / base['peak_mb']:.2f}" if base["peak_mb"] >= 10 else "-"
                            if impl.startswith("ours") and r["kernel_seconds"] > 0:
                                ceiling = f"{base['seconds'] / r['kernel_seconds']:.2f}x"
                        print(f"{head} {r['seconds']:>8.3f} {r['peak_mb']:>8.0f} {speed:>8} {ratio:>6} "
                              f"{r['kernel_seconds']:>9.3f} {ceiling:>8}")
        for grid, d in diffs:
            if "error" in d:
                print(f"equal output at {grid}: check failed: {d['error']}")
            else:
                print(f"equal output at {grid} (fp32): max |reference - ours| = {d['max_abs_diff']:.2e} "
                      f"(mean |output| {d['output_abs_mean']:.2f})")
        if not args.reference:
            print("no --reference checkout given: our numbers only (see the docstring for how to get one)")


if __name__ == "__main__":
    main()

"""WF-VAE encode/decode speed and peak memory vs video length and resolution, chunked and not.

Each measurement runs in a fresh process so peak memory is its own (CPU: peak RSS above the process's
baseline after building the model; CUDA: torch.cuda.max_memory_allocated). Ratios are against the
un-chunked run of the same size measured in the same invocation.

    python bench/vae.py                      # CPU, reduced width (base_channels 32)
    python bench/vae.py --release --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

MODES = {
    "full": dict(),
    "chunked": dict(temporal=(8, 2)),
    "chunked+tiled": dict(temporal=(8, 2), spatial=(128, 32)),
}


def build_vae(release: bool):
    from soraplan.models.vae import WFVAE

    width = 128 if release else 32
    return WFVAE(latent_dim=8, base_channels=width, encoder_energy_flow_hidden_size=width,
                 decoder_energy_flow_hidden_size=width, norm_type="layernorm", t_interpolation="trilinear")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> None:
    torch.manual_seed(0)
    device, dtype = torch.device(args.device), {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    vae = build_vae(args.release).to(device, dtype).eval()
    mode = MODES[args.mode]
    if "temporal" in mode:
        vae.enable_tiling(True, *mode["temporal"])
    if "spatial" in mode:
        vae.enable_spatial_tiling(*mode["spatial"])
    x = torch.rand(1, 3, args.frames, args.size, args.size, device=device, dtype=dtype) * 2 - 1
    baseline = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        start = time.perf_counter()
        z = vae.encode(x).mode()
        if device.type == "cuda":
            torch.cuda.synchronize()
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        vae.decode(z)
        if device.type == "cuda":
            torch.cuda.synchronize()
        decode_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb() - baseline
    print(json.dumps({"encode_s": encode_s, "decode_s": decode_s, "peak_mb": peak}))


def run_one(args, frames, size, mode) -> dict:
    command = [sys.executable, __file__, "--worker", "--frames", str(frames), "--size", str(size), "--mode", mode,
               "--device", args.device, "--dtype", args.dtype] + (["--release"] if args.release else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--release", action="store_true", help="full released width (base_channels 128)")
    parser.add_argument("--frames", type=int, nargs="+", default=[9, 33])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.worker:
        args.frames = args.frames[0]
        worker(args)
        return
    width = "release width" if args.release else "reduced width (base_channels 32)"
    print(f"WF-VAE encode+decode, {args.device} {args.dtype}, {width}, {torch.get_num_threads()} threads")
    print(f"{'frames':>6} {'size':>5} {'mode':>14} {'encode s':>9} {'decode s':>9} {'peak MB':>9} {'time x':>7} {'mem x':>7}")
    for size in args.sizes:
        for frames in args.frames:
            base = None
            for mode in MODES:
                r = run_one(args, frames, size, mode)
                if "error" in r:
                    print(f"{frames:>6} {size:>5} {mode:>14}  failed: {r['error']}")
                    continue
                base = base or r
                total, base_total = r["encode_s"] + r["decode_s"], base["encode_s"] + base["decode_s"]
                print(f"{frames:>6} {size:>5} {mode:>14} {r['encode_s']:>9.2f} {r['decode_s']:>9.2f} {r['peak_mb']:>9.0f}"
                      f" {total / base_total:>7.2f} {r['peak_mb'] / max(base['peak_mb'], 1):>7.2f}")


if __name__ == "__main__":
    main()

"""The released 2B/122 inpaint transformer (random weights) at the release's 93 x 352 x 640, CFG batch 2,
on CUDA: seconds per denoising step and achieved TFLOP/s, with the FLOP count computed from the config.

    python bench/gpu_2b.py                                   # bf16 and fp16, ours
    python bench/gpu_2b.py --reference path/to/Open-Sora-Plan --compile
    python bench/gpu_2b.py --frames 29 --device cpu --dtypes fp32 --steps 1   # a smoke run without a GPU

One step = one transformer call on the [unconditional; conditional] batch of 2, as the pipeline makes.
FLOPs count multiply-adds of the matrix products as 2 (projections, feed-forward, attention scores and
weighted sums, cross-attention over the prompt's real tokens, patch embeddings and the output
projection): the work the output needs, so padding columns a model computes anyway count as waste.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def transformer_flops(config: dict, grid: tuple[int, int, int], text_tokens: int, batch: int) -> float:
    """FLOPs of one forward pass of the v1.3 (inpaint) transformer on latents of ``grid`` (T, H, W)."""
    frames, height, width = grid
    patch = config["patch_size"]
    tokens = frames * (height // patch) * (width // patch)
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    layers, ratio = config["num_layers"], config.get("sparse_n", 1)
    sparse_layers = max(layers - 4, 0) if config.get("sparse1d") else 0
    padded = tokens + (-tokens) % (ratio * ratio) if sparse_layers else tokens
    per_token = 2 * (4 * dim * dim + 2 * dim * dim + 2 * 4 * dim * dim)  # self-attn qkvo, cross q/o, FF (4x)
    per_sample = layers * tokens * per_token
    per_sample += layers * 2 * 2 * text_tokens * dim * dim  # cross-attention k, v of the text
    per_sample += layers * 2 * 2 * tokens * text_tokens * dim  # cross-attention scores + weighted sum
    dense_layers = layers - sparse_layers
    per_sample += dense_layers * 2 * 2 * tokens * tokens * dim
    per_sample += sparse_layers * 2 * 2 * padded * (padded // ratio) * dim  # k groups of padded/k tokens
    in_channels = 2 * config["in_channels"] + 4
    per_sample += 2 * tokens * patch * patch * in_channels * dim + 2 * 2 * tokens * dim * dim  # embeddings
    per_sample += 2 * tokens * dim * patch * patch * config["out_channels"]  # output projection
    per_sample += 2 * text_tokens * (config["caption_channels"] * dim + dim * dim)  # caption projection
    return batch * per_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"], choices=list(DTYPES))
    parser.add_argument("--frames", type=int, default=93)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--text_tokens", type=int, default=512, help="prompt length after padding (the release: 512)")
    parser.add_argument("--prompt_tokens", type=int, default=120, help="real tokens of each prompt")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    parser.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    parser.add_argument("--reference", help="Open-Sora-Plan v1.3.1 checkout: also time the reference")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run this on a GPU machine (or pass --device cpu for a smoke run)")

    from soraplan.models import OpenSoraInpaint
    from soraplan.models.configs import TRANSFORMER_SIZES

    config = dict(TRANSFORMER_SIZES["2B/122"])
    device = torch.device(args.device)
    grid = ((args.frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    flops = transformer_flops(config, grid, args.prompt_tokens, batch=2)  # the work the output needs
    tokens = grid[0] * grid[1] * grid[2] // 4
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"2B/122 inpaint, {args.frames}x{args.height}x{args.width} -> latent {grid}, {tokens} tokens, "
          f"batch 2 (CFG), prompts of {args.prompt_tokens} tokens padded to {args.text_tokens}, "
          f"{flops / 1e12:.1f} TFLOP per step (counted on the prompt tokens), {name}")
    impls = (["reference"] if args.reference else []) + ["ours"] + (["ours+compile"] if args.compile else [])
    print(f"{'dtype':>5} {'impl':>13} {'s/step':>8} {'TFLOP/s':>8} {'peak GB':>8} {'speed-up':>8}")
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        base = None
        for impl in impls:
            torch.manual_seed(0)
            if impl == "reference":
                sys.path.insert(0, str(HERE))
                from reference import load_reference

                model = load_reference(args.reference, device=device.type)[0](**config)
            else:
                model = OpenSoraInpaint(**config)
            model = model.to(device, dtype).eval()
            if impl == "ours+compile":
                model.compile()
            generator = torch.Generator(device).manual_seed(0)
            x = torch.randn(2, 20, *grid, device=device, dtype=dtype, generator=generator)
            text = torch.randn(2, 1, args.text_tokens, config["caption_channels"], device=device, dtype=dtype,
                               generator=generator)
            text_mask = torch.ones(2, 1, args.text_tokens, device=device, dtype=torch.long)
            text_mask[:, :, args.prompt_tokens:] = 0  # prompts are padded to the maximum length
            video_mask = torch.ones(2, *grid, device=device, dtype=dtype)
            call = dict(hidden_states=x, timestep=torch.tensor([500.0, 500.0], device=device),
                        encoder_hidden_states=text, attention_mask=video_mask, encoder_attention_mask=text_mask,
                        return_dict=False)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            with torch.no_grad():
                for step in range(args.steps + 1):
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    start = time.perf_counter()
                    model(**call)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    if step:  # the first is warm-up
                        times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            base = base or seconds
            print(f"{dtype_name:>5} {impl:>13} {seconds:>8.3f} {flops / seconds / 1e12:>8.1f} {peak:>8.1f} "
                  f"{base / seconds:>7.2f}x")
            del model, call
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

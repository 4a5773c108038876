"""``soraplan demo``: the fastest real end-to-end run the project can do today.

No trained weights ship yet (the embedded demo model is its own piece of work), so this demo says so and
runs what does exist for real: a tiny image-to-video transformer with the released architecture and
random weights is saved as a checkpoint folder, checked, reloaded with ``from_pretrained`` and run on an
I2V-shaped input (first frame given) with classifier-free-guidance batching, timing each forward.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..models import OpenSoraInpaint, build_inpaint, opensora_inpaint_2b_122
from ..models.checkpoints import check_checkpoint_folder
from ..utils.files import atomic_directory
from .errors import UserError
from .inspect import describe_layers

LATENT_CHANNELS = 8
VAE_STRIDE_T, VAE_STRIDE_HW = 4, 8


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the I2V transformer end to end on CPU (random weights for now)")
    parser.add_argument("--output-dir", default="outputs/demo", help="where the demo checkpoint folder is written")
    parser.add_argument("--num_frames", type=int, default=29, help="pixel frames, 4k+1 (default 29)")
    parser.add_argument("--height", type=int, default=128, help="pixels, multiple of 16")
    parser.add_argument("--width", type=int, default=192, help="pixels, multiple of 16")
    parser.add_argument("--steps", type=int, default=3, help="timed forward passes")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def i2v_inputs(num_frames: int, height: int, width: int, text_len: int, caption_channels: int, generator):
    """Reference-convention inputs for one I2V step with CFG: batch [uncond; cond]."""
    frames = (num_frames - 1) // VAE_STRIDE_T + 1
    h, w = height // VAE_STRIDE_HW, width // VAE_STRIDE_HW
    noisy = torch.randn(1, LATENT_CHANNELS, frames, h, w, generator=generator)
    masked_video_latent = torch.randn(1, LATENT_CHANNELS, frames, h, w, generator=generator)
    mask = torch.ones(1, VAE_STRIDE_T, frames, h, w)  # 1 = generate
    mask[:, :, 0] = 0  # latent frame 0 = the given first pixel frame
    hidden_states = torch.cat([noisy, masked_video_latent, mask], dim=1).repeat(2, 1, 1, 1, 1)
    text = torch.randn(2, 1, text_len, caption_channels, generator=generator)
    text_mask = torch.ones(2, 1, text_len, dtype=torch.long)
    text_mask[0, :, 1:] = 0  # the empty negative prompt keeps one token
    return dict(
        hidden_states=hidden_states,
        timestep=torch.tensor([999.0, 999.0]),
        encoder_hidden_states=text,
        encoder_attention_mask=text_mask,
    )


def run(args) -> int:
    if (args.num_frames - 1) % VAE_STRIDE_T:
        raise UserError(f"--num_frames {args.num_frames} is not 4k+1; use e.g. {(args.num_frames - 1) // 4 * 4 + 1}")
    if args.height % 16 or args.width % 16 or args.height <= 0 or args.width <= 0:
        raise UserError(f"--height/--width must be positive multiples of 16, got {args.height}x{args.width}")
    if args.steps < 1:
        raise UserError("--steps must be at least 1")
    torch.manual_seed(args.seed)
    print("soraplan demo: no trained model ships yet, so no video is generated.")
    print("It runs the real I2V transformer (released architecture, tiny width, RANDOM weights) end to end.\n")

    folder = Path(args.output_dir) / "transformer"
    model = build_inpaint("tiny")
    with atomic_directory(folder) as staging:
        model.save_pretrained(staging)
    check = check_checkpoint_folder(folder)
    print(f"checkpoint  {folder}: {check.num_parameters:,} parameters, {len(check.stored)} tensors, "
          f"{'keys and shapes match' if check.ok else 'MISMATCH'}")
    print(f"layers      {describe_layers(check.layer_kinds, model.config.sparse_n)}")

    model = OpenSoraInpaint.from_pretrained(folder).eval()
    inputs = i2v_inputs(args.num_frames, args.height, args.width, 16, model.config.caption_channels,
                        torch.Generator().manual_seed(args.seed))
    frames, h, w = inputs["hidden_states"].shape[2:]
    tokens = frames * (h // 2) * (w // 2)
    print(f"input       {args.num_frames}x{args.height}x{args.width} video -> latent (2, 20, {frames}, {h}, {w}) "
          f"with CFG -> {tokens} tokens per sample, first frame given")
    times = []
    with torch.inference_mode():
        for _ in range(args.steps):
            start = time.perf_counter()
            out = model(**inputs).sample
            times.append(time.perf_counter() - start)
    print(f"forward     output {tuple(out.shape)}, finite: {bool(out.isfinite().all())}, "
          f"{min(times) * 1000:.1f} ms best of {args.steps} on {torch.get_num_threads()} CPU threads")

    with torch.device("meta"):
        release = opensora_inpaint_2b_122()
    print(f"release     the 2B/122 I2V architecture has {sum(p.numel() for p in release.parameters()):,} parameters; "
          "`soraplan inspect FOLDER` checks a downloaded checkpoint against it")
    return 0

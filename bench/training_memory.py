"""Memory per GPU and throughput of full training of the released 2B I2V transformer at 93x352x640 on
8, 16 and 128 GPUs, under DeepSpeed ZeRO-2 and ZeRO-3, with and without CPU offload and gradient
checkpointing: estimates built from counts, the activation count measured on CPU.

    python bench/training_memory.py                     # the README's table (about 5 minutes on 2 cores)
    python bench/training_memory.py --gpus 8,64 --frames 29 --ema_on_gpu 0

Every number is an estimate; how each is made:

* parameters Psi: the 32-layer model built on the meta device and counted;
* model states per GPU, mixed precision bf16 with AdamW (the ZeRO paper's accounting, K = 12 bytes of
  fp32 weights and Adam moments per parameter): ZeRO-2 keeps the bf16 weights whole (2 Psi) and
  partitions gradients and optimizer state ((2 + 12) Psi / N); ZeRO-3 partitions all three
  ((2 + 2 + 12) Psi / N). Offload moves the optimizer state (ZeRO-2 and -3) and the weights (ZeRO-3)
  to host memory, whose size per node is printed; DeepSpeed's buffers are counted from the bucket sizes
  in scripts/accelerate_configs/zero2.json and zero3.json;
* the EMA: soraplan train --use_ema keeps one fp32 copy of the weights on every GPU (4 Psi; diffusers'
  EMAModel, not partitioned), a row of its own, counted in the totals unless --ema_on_gpu 0;
* activations, measured (bench/lora_memory.py's method, every weight trainable): what autograd keeps for
  backward in models of the release's width with 2, 4 and 6 blocks at two small clip sizes, fitted per
  block as a + b x tokens and scaled to the clip; with gradient checkpointing the block inputs plus one
  rebuilt block, without it every block's; the frozen WF-VAE in bf16 and an allowance for the CUDA
  context and fragmentation (--overhead_gb); mT5-XXL on the CPU (--text_encoder_device cpu with a text
  cache; on the GPU it adds 10.5 GiB, or 10.5 / N under the reference's ZeRO-3 partitioning);
* throughput: training FLOPs per sample counted from the layer shapes (linear layers 2 x parameters x
  tokens, attention 4 x queries x keys x width, dense or Skiparse; backward twice the forward,
  checkpointing one more forward), run at the rate the release's published inference speed implies
  (150 s for 100 steps with CFG at 93x480x640 on one H100: that many forward FLOPs / 150 s), plus the
  communication of a step, not overlapped (an upper bound on the step time): ZeRO-2 reduce-scatters the
  gradients (fp32, as zero2.json says) and all-gathers the weights (bf16), ZeRO-3 also all-gathers the
  weights for the forward, the backward and the recomputation; --intra_gbs inside a node of 8 GPUs,
  --inter_gbs per GPU across nodes. Offload adds the PCIe transfers (--pcie_gbs) and the CPU's Adam
  step, measured here with torch's AdamW per core and given --cores_per_gpu cores.
"""

from __future__ import annotations

import time

import torch
from lora_memory import GIB, activation_model, estimate_parser, vae_parameters

H100_INFERENCE = {"seconds": 150.0, "steps": 100, "frames": 93, "height": 480, "width": 640}  # docs/I2V.md (v1.3.1)


def model_counts(config: dict, text_tokens: int) -> dict:
    """Parameters of the full model and the linear-layer sizes that set its FLOPs, on the meta device."""
    from soraplan.models import OpenSoraInpaint

    with torch.device("meta"):
        model = OpenSoraInpaint(**config)
    total = sum(p.numel() for p in model.parameters())
    on_text = on_video = 0  # linear weights applied once per text token / per video token
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            if ".attn2.to_k" in name or ".attn2.to_v" in name or name.startswith("caption_projection"):
                on_text += module.weight.numel()
            elif name.startswith("transformer_blocks") or name.startswith("proj_out"):
                on_video += module.weight.numel()
    block = sum(p.numel() for p in model.transformer_blocks[0].parameters())
    small = sum(p.numel() for p in model.parameters() if p.numel() < 100_000)  # stage3_param_persistence_threshold
    return {"total": total, "on_text": on_text, "on_video": on_video, "block": block, "persistent": small}


def forward_flops(config: dict, counts: dict, tokens: int, text_tokens: int) -> float:
    """FLOPs of one forward pass of one sample: linear layers and attention (dense blocks attend over
    every token, Skiparse blocks over a 1/sparse_n share)."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    blocks = config["num_layers"]
    sparse = blocks - 4 if config["sparse1d"] else 0
    linear = 2 * (counts["on_video"] * tokens + counts["on_text"] * text_tokens)
    self_attention = 4 * tokens * hidden * tokens * ((blocks - sparse) + sparse / config["sparse_n"])
    cross_attention = 4 * tokens * hidden * text_tokens * blocks
    return linear + self_attention + cross_attention


def latent_tokens(config: dict, frames: int, height: int, width: int) -> int:
    patch = config["patch_size"]
    return ((frames - 1) // 4 + 1) * (height // 8 // patch) * (width // 8 // patch)


def cpu_adam_seconds_per_parameter() -> float:
    """Seconds per parameter of one AdamW step on one core of this CPU (torch's foreach AdamW)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        weight = torch.nn.Parameter(torch.randn(1 << 22))
        weight.grad = torch.randn_like(weight)
        optimizer = torch.optim.AdamW([weight], lr=1e-4)
        optimizer.step()  # the moments are allocated here
        started = time.perf_counter()
        for _ in range(5):
            optimizer.step()
        return (time.perf_counter() - started) / 5 / weight.numel()
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = estimate_parser(__doc__)
    parser.add_argument("--gpus", default="8,16,128")
    parser.add_argument("--gpus_per_node", type=int, default=8)
    parser.add_argument("--ema_on_gpu", type=int, default=1, help="count the EMA's fp32 copy in the totals")
    parser.add_argument("--intra_gbs", type=float, default=150.0, help="collective bandwidth inside a node, GB/s")
    parser.add_argument("--inter_gbs", type=float, default=25.0, help="collective bandwidth per GPU across nodes, GB/s")
    parser.add_argument("--pcie_gbs", type=float, default=20.0, help="host <-> GPU copies, GB/s")
    parser.add_argument("--cores_per_gpu", type=int, default=12, help="CPU cores for the offloaded Adam, per GPU")
    args = parser.parse_args()

    import logging

    import diffusers

    from soraplan.models.configs import TRANSFORMER_SIZES

    diffusers.utils.logging.set_verbosity_error()
    logging.getLogger("soraplan").setLevel(logging.ERROR)

    config = dict(TRANSFORMER_SIZES["2B/122"])
    tokens = latent_tokens(config, args.frames, args.height, args.width)
    counts = model_counts(config, args.text_tokens)
    psi = counts["total"]
    print(f"2B/122 I2V transformer: {psi / 1e9:.3f} B parameters; {args.frames}x{args.height}x{args.width}: "
          f"{tokens:,} tokens; batch 1 per GPU")
    fit = activation_model(config, 0, "", args.text_tokens, args.prompt_tokens, tokens)

    # the compute rate the release's published inference speed implies
    reference = H100_INFERENCE
    reference_tokens = latent_tokens(config, reference["frames"], reference["height"], reference["width"])
    rate = 2 * reference["steps"] * forward_flops(config, counts, reference_tokens, args.text_tokens) / reference["seconds"]
    forward = forward_flops(config, counts, tokens, args.text_tokens)
    adam = cpu_adam_seconds_per_parameter()
    print(f"forward pass: {forward / 1e12:.1f} TFLOP per sample; rate implied by the release's 150 s / 100 steps "
          f"with CFG at 93x480x640 on one H100: {rate / 1e12:.0f} TFLOP/s; CPU AdamW here: "
          f"{1 / adam / 1e6:.0f} M parameters/s per core")

    fixed = vae_parameters() * 2 + args.overhead_gb * GIB
    ema = 4 * psi
    bucket = 536870912  # reduce / all-gather / prefetch bucket sizes of zero2.json and zero3.json (elements)
    print(f"\n{'GPUs':>5} {'ZeRO':>4} {'offload':>9} {'ckpt':>4} | {'states':>7} {'EMA':>5} {'buffers':>7} "
          f"{'activ.':>7} {'total':>7} | {'host/node':>9} | {'s/step':>6} {'samples/s':>9}")
    for n in [int(g) for g in args.gpus.split(",")]:
        nodes = max(1, n // args.gpus_per_node)
        bandwidth = (args.intra_gbs if nodes == 1 else args.inter_gbs) * 1e9
        share = (n - 1) / n  # the fraction of a collective's bytes each GPU sends
        for stage in (2, 3):
            for offload in ("none", "optimizer" if stage == 2 else "opt+param"):
                for checkpointing in (True, False):
                    if stage == 2:
                        gpu_states = 2 * psi + (2 + (0 if offload != "none" else 12)) * psi / n
                        host = (12 + 4) * psi / n if offload != "none" else 0  # fp32 weights, moments, gradients
                        buffers = 2 * bucket * 2
                        communicated = 4 * psi + 2 * psi  # gradients fp32 reduce-scatter, weights bf16 all-gather
                    else:
                        partitioned = 2 + 2 + 12 if offload == "none" else 0
                        gpu_states = partitioned * psi / n + 2 * counts["persistent"]
                        host = (2 + 2 + 12 + 4) * psi / n if offload != "none" else 0
                        buffers = bucket * 2 + 2 * counts["block"] * 2  # prefetch bucket + two live blocks
                        gathers = 3 if checkpointing else 2  # forward, backward (+ the recomputation)
                        communicated = 4 * psi + gathers * 2 * psi
                    activations = fit["with_checkpointing" if checkpointing else "without_checkpointing"]
                    total = gpu_states + buffers + activations + fixed + (ema if args.ema_on_gpu else 0)
                    compute = (4 if checkpointing else 3) * forward / rate
                    communication = communicated * share / bandwidth
                    offloaded = 0.0
                    if offload != "none":
                        offloaded = (2 * psi / n + 2 * psi / n) / (args.pcie_gbs * 1e9) + adam * psi / n / args.cores_per_gpu
                    step = compute + communication + offloaded
                    print(f"{n:5d} {stage:4d} {offload:>9} {'yes' if checkpointing else 'no':>4} | "
                          f"{gpu_states / GIB:7.1f} {ema / GIB:5.1f} {buffers / GIB:7.1f} {activations / GIB:7.1f} "
                          f"{total / GIB:7.1f} | {host * min(n, args.gpus_per_node) / GIB:9.0f} | "
                          f"{step:6.2f} {n / step:9.2f}")
    print("\nGiB per GPU; states = weights, gradients and optimizer state on the GPU; total includes the WF-VAE, "
          f"{args.overhead_gb:g} GiB allowance{' and the EMA' if args.ema_on_gpu else ''}; host/node = offloaded "
          "states in host memory per node; s/step with communication not overlapped (an upper bound).")


if __name__ == "__main__":
    main()

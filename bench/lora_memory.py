"""Peak GPU memory of LoRA training of the released 2B I2V transformer at 93x352x640 (bf16 weights,
gradient checkpointing, batch 1): an estimate built from counts, its activation count measured on CPU.

    python bench/lora_memory.py                        # rank 64 on the attention projections, 93x352x640
    python bench/lora_memory.py --rank 16 --frames 29 --target_gb 24

What is counted, and how:

* parameters: the 32-layer model is built on the meta device (no memory) and the adapter attached with the
  trainer's own ``attach_lora``; frozen weights are kept in bf16 (2 bytes each), the adapter in fp32 with
  its gradient, Adam's two moments and the EMA copy (5 x 4 bytes each);
* activations, measured: what autograd keeps for the backward pass (saved-tensor hooks, every storage
  counted once, weights excluded) of models with the release's width and 2, 4 and 6 of its blocks (2 and 4:
  dense blocks only; 6: also one single-skip and one group-skip Skiparse block), on CPU in bf16, at two
  small clip sizes. A block's count is a + b x tokens (a: its cross-attention over the padded prompt), so
  two sizes give it exactly and it scales to the full clip. With gradient checkpointing the forward pass
  keeps only each block's input (tokens x hidden, bf16), and the backward pass rebuilds one block's
  activations at a time: peak = blocks x block input + the largest block's activations + what lies
  outside the blocks + the gradient flowing between blocks (two tokens x hidden copies in fp32);
* around it: the WF-VAE in bf16 (it encodes the clip before the transformer runs; its own peak is over
  by then), the text encoder on the CPU (``--text_encoder_device cpu`` with ``--text_cache_dir``), and
  an allowance for the CUDA context, cuBLAS workspaces and allocator slack (``--overhead_gb``).

Attention on CPU here uses PyTorch's flash kernel (it keeps the output and log-sum-exp, not the
score matrix), as the GPU kernels do; the script says so if the measured count was not linear in tokens.
"""

from __future__ import annotations

import argparse
import sys

import torch

GIB = 2**30


def meta_parameter_counts(config: dict, rank: int, targets: str) -> tuple[int, int]:
    """(frozen base parameters, adapter parameters) of the full model, built on the meta device."""
    from soraplan.models import OpenSoraInpaint
    from soraplan.training.lora import attach_lora, lora_config

    with torch.device("meta"):
        model = OpenSoraInpaint(**config)
        attach_lora(model, lora_config(rank, None, targets, 0.0))
    adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    return base, adapter


def vae_parameters() -> int:
    """Parameters of the released WF-VAE (8 latent channels, base 128, energy flow 128), on the meta device."""
    from soraplan.models.vae import WFVAE

    with torch.device("meta"):
        vae = WFVAE(latent_dim=8, base_channels=128, encoder_energy_flow_hidden_size=128,
                    decoder_energy_flow_hidden_size=128, norm_type="layernorm", t_interpolation="trilinear")
    return sum(p.numel() for p in vae.parameters())


def saved_bytes(config: dict, layers: int, grid: tuple[int, int, int], rank: int, targets: str,
                text_tokens: int, prompt_tokens: int) -> int:
    """Bytes autograd keeps for backward in one training forward of a ``layers``-block model (no
    checkpointing) on latents of ``grid``; weights and the inputs themselves are not counted. ``rank``
    0: every weight trains (full fine-tuning), otherwise a LoRA adapter of that rank on ``targets``."""
    from soraplan.models import OpenSoraInpaint
    from soraplan.training.lora import attach_lora, lora_config

    torch.manual_seed(0)
    model = OpenSoraInpaint(**{**config, "num_layers": layers}).to(torch.bfloat16)
    if rank:
        attach_lora(model, lora_config(rank, None, targets, 0.0))
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.data = parameter.data.float()  # the trainer keeps the adapter in fp32
    model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    x = torch.randn(1, 2 * config["in_channels"] + 4, *grid, dtype=torch.bfloat16)
    text = torch.randn(1, 1, text_tokens, config["caption_channels"], dtype=torch.bfloat16)
    text_mask = torch.zeros(1, 1, text_tokens, dtype=torch.long)
    text_mask[..., :prompt_tokens] = 1
    inputs = {x.untyped_storage().data_ptr(), text.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def pack(tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in weights and pointer not in inputs and pointer not in seen:
            seen[pointer] = tensor.untyped_storage().nbytes()
        return tensor

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x, torch.tensor([500.0]), text, encoder_attention_mask=text_mask, return_dict=False)[0]
    total = sum(seen.values())
    out.float().square().mean().backward()  # the count is of a graph that really runs backward
    return total


def activation_model(config: dict, rank: int, targets: str, text_tokens: int, prompt_tokens: int,
                     tokens: int) -> dict:
    """Activation bytes of one training sample of ``tokens`` tokens through the full model, from counts
    measured (``saved_bytes``) at two small clip sizes with 2, 4 and 6 blocks and fitted as a + b x tokens
    per block: with gradient checkpointing (block inputs kept + the largest block rebuilt + outside the
    blocks + the gradient between blocks) and without (every block's activations)."""
    patch = config["patch_size"]
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    blocks = config["num_layers"]
    sparse = blocks - 4 if config["sparse1d"] else 0
    sizes = [(2, 16, 32), (4, 16, 32)]  # latent frames x height x width
    counts = {}
    for grid in sizes:
        small_tokens = grid[0] * (grid[1] // patch) * (grid[2] // patch)
        for layers in (2, 4, 6):
            counts[small_tokens, layers] = saved_bytes(config, layers, grid, rank, targets, text_tokens, prompt_tokens)
            print(f"  measured: {layers} blocks, {small_tokens:5d} tokens: {counts[small_tokens, layers] / 2**20:8.1f} MiB kept "
                  "for backward", flush=True)
    (t1, t2) = sorted({t for t, _ in counts})

    def per_token_fit(values: dict[int, float]) -> tuple[float, float]:
        slope = (values[t2] - values[t1]) / (t2 - t1)
        return values[t1] - slope * t1, slope  # (intercept, per token)

    dense = per_token_fit({t: (counts[t, 4] - counts[t, 2]) / 2 for t in (t1, t2)})
    skip_pair = per_token_fit({t: counts[t, 6] - counts[t, 4] for t in (t1, t2)})  # one single- + one group-skip
    outside = per_token_fit({t: counts[t, 2] - 2 * ((counts[t, 4] - counts[t, 2]) / 2) for t in (t1, t2)})

    def at(fit, n_tokens):
        return fit[0] + fit[1] * n_tokens

    # sanity of the fit: a dense block's growth per token in multiples of one tokens x hidden bf16 tensor
    per_token_dense = dense[1] / (hidden * 2)
    if not 4 < per_token_dense < 200:
        print(f"warning: a dense block keeps {per_token_dense:.1f} x (tokens x hidden) bf16 values per token, "
              "outside the expected range: the attention kernel may keep its score matrix here", file=sys.stderr)
    dense_block = at(dense, tokens)
    skip_block = at(skip_pair, tokens) / 2
    largest_block = max(dense_block, skip_block)
    block_inputs = blocks * tokens * hidden * 2
    between_blocks = 2 * tokens * hidden * 4
    rest = max(at(outside, tokens), 0)
    return {"with_checkpointing": block_inputs + largest_block + rest + between_blocks,
            "without_checkpointing": (blocks - sparse) * dense_block + sparse * skip_block + rest,
            "block_inputs": block_inputs, "largest_block": largest_block, "dense_block": dense_block,
            "skip_block": skip_block, "per_token_dense": per_token_dense}


def estimate_parser(doc: str) -> argparse.ArgumentParser:
    """The flags every memory estimate here takes: the clip, the prompt, the allowance."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=93)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--text_tokens", type=int, default=512, help="the prompt's padded length (the release: 512)")
    parser.add_argument("--prompt_tokens", type=int, default=120)
    parser.add_argument("--overhead_gb", type=float, default=2.0,
                        help="CUDA context, cuBLAS workspaces, allocator fragmentation")
    return parser


def main() -> None:
    parser = estimate_parser(__doc__)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--target_modules", default="to_q,to_k,to_v,to_out.0")
    parser.add_argument("--target_gb", type=float, default=24.0)
    args = parser.parse_args()

    import logging

    import diffusers

    from soraplan.models.configs import TRANSFORMER_SIZES

    diffusers.utils.logging.set_verbosity_error()  # the bf16 cast's notice, once per measured model
    logging.getLogger("soraplan").setLevel(logging.ERROR)  # "no layer uses Skiparse" at 2 and 4 blocks: intended

    config = dict(TRANSFORMER_SIZES["2B/122"])
    patch = config["patch_size"]
    latent = ((args.frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    tokens = latent[0] * (latent[1] // patch) * (latent[2] // patch)

    base, adapter = meta_parameter_counts(config, args.rank, args.target_modules)
    print(f"2B/122 I2V transformer: {base / 1e9:.3f} B frozen parameters, LoRA rank {args.rank} on "
          f"{args.target_modules}: {adapter / 1e6:.1f} M trained parameters")

    fit = activation_model(config, args.rank, args.target_modules, args.text_tokens, args.prompt_tokens, tokens)
    activations, without_checkpointing = fit["with_checkpointing"], fit["without_checkpointing"]
    checkpoint_inputs, largest_block = fit["block_inputs"], fit["largest_block"]
    dense_block, skip_block, per_token_dense = fit["dense_block"], fit["skip_block"], fit["per_token_dense"]

    weights = base * 2
    trained = adapter * 4 * 5  # weights, gradients, Adam m and v, EMA: fp32
    vae = vae_parameters() * 2  # bf16
    overhead = args.overhead_gb * GIB
    total = weights + trained + vae + activations + overhead
    rows = [
        ("frozen transformer weights, bf16", weights),
        (f"adapter ({adapter / 1e6:.1f} M): fp32 weights, gradients, Adam moments, EMA", trained),
        ("WF-VAE weights, bf16 (mT5-XXL on the CPU: --text_encoder_device cpu)", vae),
        (f"activations with gradient checkpointing ({tokens:,} tokens)", activations),
        ("   of which: the 32 block inputs kept through the forward pass", checkpoint_inputs),
        ("   of which: one block rebuilt in the backward pass", largest_block),
        ("CUDA context, workspaces, fragmentation (allowance)", overhead),
    ]
    print(f"\nestimate for {args.frames}x{args.height}x{args.width} (latent {latent}, {tokens:,} tokens), batch 1:")
    for label, value in rows:
        print(f"  {label:72s} {value / GIB:6.1f} GiB")
    print(f"  {'total':72s} {total / GIB:6.1f} GiB  ({'fits' if total <= args.target_gb * GIB else 'does not fit'} "
          f"{args.target_gb:g} GB)")
    print(f"  (without gradient checkpointing the activations alone would be {without_checkpointing / GIB:.1f} GiB)")
    print(f"  per block, measured: dense {dense_block / GIB:.2f} GiB, Skiparse {skip_block / GIB:.2f} GiB at this size; "
          f"a dense block keeps {per_token_dense:.1f} tokens x hidden bf16 tensors per token")


if __name__ == "__main__":
    main()

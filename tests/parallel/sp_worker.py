"""Run under torchrun (2+ ranks): the sequence-parallel transformer against the one-device forward.

Prints one line per check and exits non-zero on a mismatch. Used by test_ulysses.py.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/tests")
from conftest import randomize_  # noqa: E402

from soraplan.models import build_inpaint  # noqa: E402
from soraplan.parallel import UlyssesGroup, enable_sequence_parallel  # noqa: E402


def main() -> int:
    dist.init_process_group("gloo")
    group = UlyssesGroup()
    torch.manual_seed(0)
    model = randomize_(build_inpaint("tiny", num_attention_heads=4, attention_head_dim=6, cross_attention_dim=24),
                       std=0.1).eval()
    frames = 2 * group.world + 1 if len(sys.argv) < 2 else int(sys.argv[1])  # not a multiple of 16 tokens
    frames -= frames % group.world
    inputs = dict(
        hidden_states=torch.randn(2, 20, frames, 6, 10),
        timestep=torch.tensor([900.0, 15.0]),
        encoder_hidden_states=torch.randn(2, 1, 7, 32),
        encoder_attention_mask=torch.tensor([[[1] * 7], [[1] * 4 + [0] * 3]]),
        attention_mask=torch.ones(2, frames, 6, 10),
    )
    inputs["attention_mask"][1, -1, :, 4:] = 0
    failures = 0

    with torch.no_grad():
        expected = model(**inputs).sample
    model.zero_grad()
    model(**inputs).sample.square().mean().backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    enable_sequence_parallel(model, group)
    part = group.local_slice(frames)
    local = dict(inputs)
    local["hidden_states"] = inputs["hidden_states"][:, :, part]
    local["attention_mask"] = inputs["attention_mask"][:, part]
    with torch.no_grad():
        out = group.gather(model(**local).sample, dim=2)
    err = (out - expected).abs().max().item()
    print(f"rank {group.rank} forward max err {err:.2e}")
    failures += err > 1e-5

    model.zero_grad()
    # the global loss is a mean over all tokens: each rank contributes its share
    (model(**local).sample.square().sum() / expected.numel()).backward()
    worst = 0.0
    for name, param in model.named_parameters():
        grad = param.grad.clone()
        dist.all_reduce(grad)
        worst = max(worst, (grad - expected_grads[name]).abs().max().item())
    print(f"rank {group.rank} gradient max err {worst:.2e}")
    failures += worst > 1e-5
    dist.destroy_process_group()
    return int(failures > 0)


if __name__ == "__main__":
    sys.exit(main())

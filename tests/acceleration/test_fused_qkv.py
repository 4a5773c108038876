"""Fused q/k/v projections: same output, checkpoint keys untouched, reversible."""

from __future__ import annotations

import torch

from soraplan.acceleration import fuse_qkv, unfuse_qkv
from soraplan.models import build_inpaint

from ..conftest import randomize_


def test_fused_projections_give_the_same_output_and_keep_the_keys():
    model = randomize_(build_inpaint("tiny")).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, model.expected_in_channels, 3, 8, 8, generator=generator)
    text = torch.randn(2, 1, 5, model.config.caption_channels, generator=generator)
    keys = list(model.state_dict())
    with torch.no_grad():
        plain = model(x, 500, text).sample
        assert fuse_qkv(model) == len(model.transformer_blocks)
        fused = model(x, 500, text).sample
        assert list(model.state_dict()) == keys  # saves exactly as before
        model.to(torch.float64)  # the fused copies follow .to()
        assert model.transformer_blocks[0].attn1.fused_qkv_weight.dtype == torch.float64
        model.to(torch.float32)
        unfuse_qkv(model)
        again = model(x, 500, text).sample
    assert torch.allclose(plain, fused, atol=1e-5)
    assert torch.equal(plain, again)
    assert not hasattr(model.transformer_blocks[0].attn1, "fused_qkv_weight")

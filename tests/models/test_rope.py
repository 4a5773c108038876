"""3-D RoPE: rotate-half pairing inside each axis chunk, as the reference defines it."""

from __future__ import annotations

import torch

from soraplan.models.rope import RoPE3D, apply_rope


def rotate_half_by_hand(x, cos, sin):
    """Channel c and c + h of every axis chunk (h = chunk/2) form one rotating pair."""
    out = torch.empty_like(x)
    chunk = x.shape[-1] // 3
    half = chunk // 2
    for axis in range(3):
        for c in range(axis * chunk, axis * chunk + half):
            first, second = x[..., c], x[..., c + half]
            out[..., c] = first * cos[:, c, None] - second * sin[:, c, None]
            out[..., c + half] = second * cos[:, c + half, None] + first * sin[:, c + half, None]
    return out


def test_apply_rope_is_rotate_half_per_axis_for_any_tables():
    x = torch.randn(2, 10, 3, 12)  # (B, S, heads, d)
    cos, sin = torch.randn(10, 12), torch.randn(10, 12)  # not even real tables: the formula must hold anyway
    torch.testing.assert_close(apply_rope(x, cos, sin), rotate_half_by_hand(x, cos, sin), atol=1e-6, rtol=1e-6)


def test_rope_rotates_pairs_and_keeps_their_length():
    cos, sin = RoPE3D(24).cos_sin((2, 3, 4), torch.device("cpu"), torch.float32)
    x = torch.randn(1, 24, 2, 24)
    out = apply_rope(x, cos, sin)
    pairs_in = x.unflatten(-1, (3, 2, 4)).square().sum(-2)
    pairs_out = out.unflatten(-1, (3, 2, 4)).square().sum(-2)
    torch.testing.assert_close(pairs_out, pairs_in, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, 0], x[:, 0])  # position (0, 0, 0): angle 0 everywhere

"""3-D rotary position embedding (RoPE) of the Open-Sora Plan v1.3 transformer.

The head dimension is cut into three equal chunks that rotate with the token's frame, row and column
index. Inside a chunk, channel ``c`` and ``c + chunk/2`` share one frequency ("rotate-half" pairing).

Unlike the reference, cos/sin are evaluated in float32 and only then cast to the activation dtype: the
reference casts the *angles* to fp16 first, which costs up to ~0.03 rad of phase at position 40.
"""

from __future__ import annotations

import torch


class RoPE3D:
    """Builds cos/sin tables for a (T, H, W) token grid; stateless apart from its settings."""

    def __init__(
        self,
        head_dim: int,
        interpolation_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
        base: float = 10000.0,
    ):
        if head_dim % 6 != 0:
            raise ValueError(
                f"attention_head_dim={head_dim} cannot carry 3-D RoPE: it must be divisible by 6 "
                "(three axes, each an even number of channels), e.g. 12, 48, 96"
            )
        self.head_dim = head_dim
        self.axis_dim = head_dim // 3
        self.interpolation_scale = tuple(float(s) for s in interpolation_scale)
        self.base = float(base)

    def _axis_angles(self, length: int, scale: float, device: torch.device) -> torch.Tensor:
        """Angles (length, axis_dim) in float32 for positions 0..length-1 of one axis."""
        exponents = torch.arange(0, self.axis_dim, 2, device=device, dtype=torch.float32) / self.axis_dim
        inv_freq = 1.0 / (self.base**exponents)  # (axis_dim/2,)
        positions = torch.arange(length, device=device, dtype=torch.float32) / scale
        angles = torch.outer(positions, inv_freq)  # (length, axis_dim/2)
        return torch.cat((angles, angles), dim=-1)  # (length, axis_dim)

    def cos_sin(
        self, grid: tuple[int, int, int], device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables (S, head_dim) for the tokens of a (T, H, W) grid in (t, h, w) row-major order."""
        frames, rows, cols = grid
        t_angles, y_angles, x_angles = (
            self._axis_angles(n, s, device) for n, s in zip(grid, self.interpolation_scale)
        )
        angles = torch.cat(
            (
                t_angles[:, None, None, :].expand(frames, rows, cols, -1),
                y_angles[None, :, None, :].expand(frames, rows, cols, -1),
                x_angles[None, None, :, :].expand(frames, rows, cols, -1),
            ),
            dim=-1,
        ).reshape(frames * rows * cols, self.head_dim)  # (S, head_dim)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def fold_rotation_sign(sin: torch.Tensor) -> torch.Tensor:
    """(S, head_dim) sin table -> [-sin1, sin2] inside each axis chunk: the table :func:`rotate` takes.

    Built once per forward pass (``OpenSoraT2V.prepare_inputs``), not per layer."""
    halves = sin.unflatten(-1, (3, 2, -1))  # (S, 3, 2, head_dim/6)
    return torch.cat((-halves[..., :1, :], halves[..., 1:, :]), dim=-2).flatten(-3)


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE of x (B, S, heads, head_dim) with ``cos`` and a sign-folded sin table, both (S, head_dim).

    x·cos + [x2, x1]·[-sin1, sin2] equals x·cos + rotate_half(x)·sin with the sign moved onto the small
    table, so the full-size tensor goes through three passes instead of five."""
    halves = x.unflatten(-1, (3, 2, -1))  # (..., 3, 2, head_dim/6)
    swapped = torch.cat((halves[..., 1:, :], halves[..., :1, :]), dim=-2).flatten(-3)  # [x2, x1]
    out = x * cos[None, :, None, :]
    return out.addcmul_(swapped, signed_sin[None, :, None, :])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, S, heads, head_dim) with plain tables (S, head_dim): x·cos + rotate_half(x)·sin."""
    return rotate(x, cos, fold_rotation_sign(sin))

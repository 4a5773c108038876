"""Spatial tiling: run a function on overlapping tiles of a video and blend the results.

Used by WF-VAE for frames larger than a tile (bounded memory at high resolution). Tiles have a fixed
size (the last row/column is aligned to the border), and overlapping outputs are combined with
weights that ramp linearly across each overlap and are normalised to sum to one at every pixel, so a
function that commutes with cropping is reproduced exactly. The VAE does not quite commute (its
convolutions and per-frame attention see beyond a tile), so tiled output is an approximation whose
error is confined to the seams.
"""

from __future__ import annotations

from typing import Callable

import torch


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles covering ``size``; every start is a multiple of ``align``."""
    if size <= tile:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, size - tile, stride))
    starts.append(-(-(size - tile) // align) * align)  # last tile reaches the border (may be shorter)
    return sorted(set(starts))


def _ramp(length: int, ramp: int, rise: bool, fall: bool, device) -> torch.Tensor:
    weight = torch.ones(length, device=device)
    ramp = min(ramp, length)
    if ramp > 0:
        steps = torch.arange(1, ramp + 1, device=device, dtype=torch.float32) / (ramp + 1)
        if rise:
            weight[:ramp] = torch.minimum(weight[:ramp], steps)
        if fall:
            weight[-ramp:] = torch.minimum(weight[-ramp:], steps.flip(0))
    return weight


def blend_spatial_tiles(
    x: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    tile: int,
    overlap: int,
    scale: tuple[int, int] = (1, 1),
    align: int = 1,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping (tile x tile) crops of x (..., H, W) and blend.

    ``fn`` must map an (h, w) crop to (h·p/q, w·p/q) with ``scale = (p, q)`` (e.g. (1, 8) for an
    encoder, (8, 1) for a decoder); every other dimension of its output is free.
    """
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    num, den = scale
    rows = tile_starts(height, tile, overlap, align)
    cols = tile_starts(width, tile, overlap, align)
    ramp = overlap * num // den
    out = weight_sum = None
    for r in rows:
        for c in cols:
            piece = fn(x[..., r:r + tile, c:c + tile])
            ph, pw = piece.shape[-2:]
            top, left = r * num // den, c * num // den
            if out is None:
                out = piece.new_zeros(*piece.shape[:-2], height * num // den, width * num // den)
                weight_sum = torch.zeros(out.shape[-2:], device=out.device)
            window = torch.outer(
                _ramp(ph, ramp, rise=r > 0, fall=r + tile < height, device=out.device),
                _ramp(pw, ramp, rise=c > 0, fall=c + tile < width, device=out.device),
            )
            out[..., top:top + ph, left:left + pw] += piece * window.to(piece.dtype)
            weight_sum[top:top + ph, left:left + pw] += window
    return out / weight_sum.to(out.dtype)

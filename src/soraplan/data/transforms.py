"""Spatial transforms shared by the training data and the sampling pipeline (the reference's rules).

All resizing is bilinear with antialiasing (``align_corners=True`` as the reference) on uint8 frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (F, 3, h, w) -> uint8 (F, 3, height, width)."""
    if frames.shape[-2:] == (height, width):
        return frames
    out = F.interpolate(frames.float(), size=(height, width), mode="bilinear", align_corners=True, antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8)


def center_crop_resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop to the target aspect ratio around the centre, then resize to (height, width)."""
    h, w = frames.shape[-2:]
    if h * width > w * height:  # too tall
        crop_h, crop_w = int(w * height / width), w
    else:
        crop_h, crop_w = h, int(h * width / height)
    top, left = int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0))
    return resize(frames[..., top:top + crop_h, left:left + crop_w], height, width)


def max_area_size(height: int, width: int, max_hxw: int) -> tuple[int, int]:
    """Shrink (never enlarge) to an area of at most ``max_hxw``, keeping the aspect ratio."""
    if height * width > max_hxw:
        scale = math.sqrt(max_hxw / (height * width))
        height, width = int(height * scale), int(width * scale)
    return height, width


def stride_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """The largest multiples of ``stride`` that fit."""
    return height // stride * stride, width // stride * stride


def center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre crop (..., H, W) to (height, width), offsets rounded down."""
    top, left = (frames.shape[-2] - height) // 2, (frames.shape[-1] - width) // 2
    return frames[..., top:top + height, left:left + width]

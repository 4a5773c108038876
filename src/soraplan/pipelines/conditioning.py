"""Conditioning frames for I2V sampling: load images / a video, bring them to one resolution, and place
them in a num_frames-long video with its temporal mask (1 = generate, 0 = given).

Resolution follows the reference (spec §6.6):
* fixed mode (``crop_for_hw``): centre-crop every input to the target aspect ratio, resize to
  (height, width);
* arbitrary mode: take the smallest height and width over the inputs, shrink (never enlarge) to an area
  of at most ``max_hxw``, centre-crop + resize every input to that, then centre-crop to multiples of 32.

A video of at least num_frames frames is masked by type (continuation: the first half given, as the
reference); a shorter video is continued: all of its frames given, the rest generated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.transforms import center_crop, center_crop_resize, max_area_size, stride_size
from ..data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, read_video
from ..masks import MaskType, mask_from_indices, mask_video, temporal_mask

RESOLUTION_STRIDE = 32


@dataclass
class Conditioning:
    """What the sampler needs: the pixel video with given frames in place (-1 elsewhere) and the mask."""

    video: torch.Tensor  # (3, T, H, W) float in [-1, 1]; frames to generate are -1
    mask: torch.Tensor  # (T,) 1 = generate, 0 = given
    mask_type: MaskType


def load_condition(item) -> torch.Tensor:
    """An image or video (path, PIL image, (H, W, 3) / (T, H, W, 3) uint8 array, or uint8 tensor of
    (3, H, W) / (T, 3, H, W)) -> uint8 tensor (F, 3, H, W); F = 1 for an image."""
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"conditioning file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix in VIDEO_EXTENSIONS:
            frames, _ = read_video(path)
            return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
        if suffix not in IMAGE_EXTENSIONS:
            raise ValueError(f"{path}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or video ({', '.join(VIDEO_EXTENSIONS)})")
        from PIL import Image

        try:
            with Image.open(path) as image:
                item = np.array(image.convert("RGB"))
        except OSError as error:
            raise ValueError(f"{path}: cannot read image ({error})") from None
    if hasattr(item, "convert"):  # PIL image
        item = np.array(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(np.ascontiguousarray(item))
        item = item.permute(2, 0, 1) if item.ndim == 3 else item.permute(0, 3, 1, 2)
    if not isinstance(item, torch.Tensor) or item.dtype != torch.uint8 or item.ndim not in (3, 4):
        raise ValueError("a condition must be a path, a PIL image, or uint8 (H, W, 3) / (T, H, W, 3) pixels")
    frames = item[None] if item.ndim == 3 else item
    if frames.shape[1] != 3:
        raise ValueError(f"conditioning pixels must have 3 channels, got shape {tuple(item.shape)}")
    return frames.contiguous()


def to_common_resolution(conditions: list[torch.Tensor], height: int, width: int, crop_for_hw: bool,
                         max_hxw: int) -> list[torch.Tensor]:
    if crop_for_hw:
        return [center_crop_resize(c, height, width) for c in conditions]
    target_h, target_w = max_area_size(min(c.shape[-2] for c in conditions), min(c.shape[-1] for c in conditions), max_hxw)
    out_h, out_w = stride_size(target_h, target_w, RESOLUTION_STRIDE)
    if out_h == 0 or out_w == 0:
        raise ValueError(f"conditioning inputs of {target_h}x{target_w} pixels are smaller than {RESOLUTION_STRIDE}x{RESOLUTION_STRIDE}")
    return [center_crop(center_crop_resize(c, target_h, target_w), out_h, out_w) for c in conditions]


def mask_type_of(mask: torch.Tensor) -> MaskType:
    """The name of a temporal mask's pattern (keyframes anywhere else are ``random_temporal``)."""
    given = (mask < 0.5).nonzero().flatten().tolist()
    last = len(mask) - 1
    if not given:
        return MaskType.t2iv
    if len(given) == len(mask):
        return MaskType.clear
    if given == [0]:
        return MaskType.i2v
    if given == [0, last]:
        return MaskType.transition
    if given == list(range(len(given))):
        return MaskType.continuation
    return MaskType.random_temporal


def default_indices(mask_type: MaskType, count: int, num_frames: int) -> list[int]:
    """Where ``count`` images go for a mask type when the caller gives no indices."""
    if mask_type is MaskType.i2v:
        if count != 1:
            raise ValueError(f"mask_type i2v takes 1 image, got {count}; pass indices for keyframes")
        return [0]
    if mask_type is MaskType.transition:
        if count != 2:
            raise ValueError(f"mask_type transition takes 2 images (first, last), got {count}")
        return [0, num_frames - 1]
    if mask_type is MaskType.continuation:
        return list(range(count))
    if mask_type is MaskType.clear:
        if count != num_frames:
            raise ValueError(f"mask_type clear gives every frame: needs {num_frames} images, got {count}")
        return list(range(count))
    if mask_type is MaskType.t2iv:
        raise ValueError("mask_type t2iv generates every frame: give no conditioning images")
    raise ValueError(f"{count} images with mask_type {mask_type.value}: pass their frame indices")


def build_conditioning(
    conditions: list,
    num_frames: int,
    height: int,
    width: int,
    *,
    indices: list[int] | None = None,
    mask_type: str | MaskType | None = None,
    crop_for_hw: bool = False,
    max_hxw: int = 236544,
    rng: random.Random | None = None,
) -> Conditioning:
    """Place the conditions in a ``num_frames`` video and build its mask (see the module docstring)."""
    mask_type = MaskType.parse(mask_type) if mask_type is not None else None
    loaded = [load_condition(c) for c in conditions]
    if not loaded:
        if mask_type not in (None, MaskType.t2iv):
            raise ValueError(f"mask_type {mask_type.value} needs conditioning images or a video")
        video = -torch.ones(3, num_frames, height, width)
        return Conditioning(video, torch.ones(num_frames), MaskType.t2iv)
    videos = [c for c in loaded if c.shape[0] > 1]
    if videos and len(loaded) > 1:
        raise ValueError("give either one video or images, not both")
    pixels = to_common_resolution(loaded, height, width, crop_for_hw, max_hxw)
    out_h, out_w = pixels[0].shape[-2:]

    if videos:  # a video: its first num_frames frames, masked by type (default continuation)
        frames = pixels[0]
        mask_type = mask_type or MaskType.continuation
        if frames.shape[0] < num_frames:
            if mask_type is not MaskType.continuation:
                raise ValueError(f"the conditioning video has {frames.shape[0]} frames; {num_frames} are needed "
                                 f"for mask_type {mask_type.value} (a shorter one is continued as it is)")
            # a shorter clip is continued: all of its frames are given, the rest generated
            given = frames.shape[0]
            frames = torch.cat([frames, frames.new_zeros(num_frames - given, *frames.shape[1:])])
            mask = torch.ones(num_frames)
            mask[:given] = 0
        else:
            frames = frames[:num_frames]
            mask = temporal_mask(mask_type, num_frames, 0.5, 0.5, rng=rng)
    else:  # images at frame indices
        if indices is None:
            if mask_type is None:
                mask_type = {1: MaskType.i2v, 2: MaskType.transition}.get(len(pixels), MaskType.random_temporal)
            if num_frames == 1 and len(pixels) == 1 and mask_type in (MaskType.i2v, MaskType.clear):
                indices = [0]
            else:
                indices = default_indices(mask_type, len(pixels), num_frames)
        elif len(indices) != len(pixels):
            raise ValueError(f"{len(pixels)} images but {len(indices)} frame indices")
        mask = mask_from_indices(num_frames, indices)
        mask_type = mask_type or mask_type_of(mask)
        frames = torch.zeros(num_frames, 3, out_h, out_w, dtype=torch.uint8)
        for index, image in zip(indices, pixels):
            frames[index] = image[0]
    video = frames.float().div(255).mul(2).sub(1).transpose(0, 1)  # (3, T, H, W)
    return Conditioning(mask_video(video[None], mask)[0], mask, mask_type)

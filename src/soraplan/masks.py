"""Temporal conditioning masks of the inpaint (I2V) model, shared by inference and training.

Convention (as released): a pixel-level mask (T,) per video, **1 = to generate, 0 = given**. Given
frames keep their pixels; frames to generate are set to -1 (black in [-1, 1]) before VAE encoding.
The mask enters the transformer compressed to ``vae_stride_t`` channels per latent frame
(:func:`compress_mask`).

Mask types: t2iv (nothing given), i2v (first frame), transition (first and last), continuation (a
random-length prefix), clear (everything given), random_temporal (random frames).
"""

from __future__ import annotations

import math
import random
from enum import Enum

import torch
import torch.nn.functional as F


class MaskType(str, Enum):
    t2iv = "t2iv"
    i2v = "i2v"
    transition = "transition"
    continuation = "continuation"
    clear = "clear"
    random_temporal = "random_temporal"

    @classmethod
    def parse(cls, value: "str | MaskType") -> "MaskType":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown mask type {value!r}; choose one of {', '.join(m.value for m in cls)}") from None


def temporal_mask(
    mask_type: str | MaskType,
    num_frames: int,
    min_clear_ratio: float = 0.0,
    max_clear_ratio: float = 1.0,
    rng: random.Random | None = None,
) -> torch.Tensor:
    """(T,) float mask for one video: 1 = generate, 0 = given."""
    mask_type = MaskType.parse(mask_type)
    if not 0.0 <= min_clear_ratio <= max_clear_ratio <= 1.0:
        raise ValueError(f"need 0 <= min_clear_ratio <= max_clear_ratio <= 1, got {min_clear_ratio}, {max_clear_ratio}")
    rng = rng or random.Random()
    mask = torch.ones(num_frames)
    if mask_type is MaskType.i2v:
        mask[0] = 0
    elif mask_type is MaskType.transition:
        mask[0] = mask[-1] = 0
    elif mask_type is MaskType.clear:
        mask[:] = 0
    elif mask_type in (MaskType.continuation, MaskType.random_temporal):
        count = rng.randint(math.floor(num_frames * min_clear_ratio), math.ceil(num_frames * max_clear_ratio))
        if mask_type is MaskType.continuation:
            mask[:count] = 0
        else:
            mask[rng.sample(range(num_frames), count)] = 0
    return mask


def mask_from_indices(num_frames: int, given: list[int]) -> torch.Tensor:
    """(T,) mask with the frames at ``given`` (negative indices count from the end) marked as given."""
    mask = torch.ones(num_frames)
    for index in given:
        if not -num_frames <= index < num_frames:
            raise ValueError(f"frame index {index} is outside a {num_frames}-frame video")
        mask[index] = 0
    return mask


def mask_video(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep given frames, set frames to generate to -1. video (B, C, T, H, W) in [-1, 1]; mask (B, T) or (T,)."""
    keep = (mask < 0.5).to(video.dtype)
    keep = keep.view(keep.shape[0] if keep.ndim == 2 else 1, 1, -1, 1, 1)
    return video * keep - (1 - keep)


def compress_mask(mask: torch.Tensor, height: int, width: int, vae_stride_t: int = 4, vae_stride_hw: int = 8) -> torch.Tensor:
    """Pixel mask (B, T) (or (B, 1, T, H, W)) -> latent mask (B, vae_stride_t, T', H/s, W/s).

    Channel c of latent frame j >= 1 is pixel frame vae_stride_t·(j-1) + 1 + c; latent frame 0 holds
    frame 0 in every channel (the causal VAE encodes frame 0 alone). Spatially the mask is resized
    bilinearly, which for the temporal masks used here is the constant value of each frame.
    """
    if mask.ndim == 2:
        mask = mask[:, None, :, None, None].expand(-1, 1, -1, height, width)
    batch, _, frames = mask.shape[:3]
    if (frames - 1) % vae_stride_t:
        raise ValueError(f"mask has {frames} frames; the VAE needs {vae_stride_t}k+1")
    planes = mask.transpose(1, 2).reshape(batch * frames, 1, *mask.shape[-2:]).float()
    planes = F.interpolate(planes, size=(height // vae_stride_hw, width // vae_stride_hw), mode="bilinear",
                           align_corners=False)
    planes = planes.view(batch, frames, *planes.shape[-2:])
    planes = torch.cat([planes[:, :1].expand(-1, vae_stride_t, -1, -1), planes[:, 1:]], dim=1)  # (B, s·T', h, w)
    latent_frames = planes.shape[1] // vae_stride_t
    return planes.view(batch, latent_frames, vae_stride_t, *planes.shape[-2:]).transpose(1, 2).to(mask.dtype)


def normalize_mask_ratios(ratios: dict) -> dict[MaskType, float]:
    """A ``mask_type_ratio_dict_*`` of the mask config -> probabilities summing to 1.

    Unknown types, negative weights and all-zero weights are errors (the reference silently turns
    all-zero into a uniform choice).
    """
    if not ratios:
        raise ValueError("mask type ratios are empty: give at least one of " + ", ".join(m.value for m in MaskType))
    parsed = {}
    for key, weight in ratios.items():
        mask_type = MaskType.parse(key)
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"mask type ratio for {key!r} must be a non-negative number, got {weight!r}")
        parsed[mask_type] = float(weight)
    total = sum(parsed.values())
    if total <= 0:
        raise ValueError(f"mask type ratios {ratios} are all zero: give at least one positive weight")
    return {k: v / total for k, v in parsed.items() if v > 0}


def sample_mask_type(probabilities: dict[MaskType, float], rng: random.Random | None = None) -> MaskType:
    rng = rng or random.Random()
    types = list(probabilities)
    return rng.choices(types, weights=[probabilities[t] for t in types])[0]


def add_condition_noise(
    video: torch.Tensor,
    mask: torch.Tensor,
    log_sigma_mean: float,
    log_sigma_std: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian noise on the given frames of a masked video (B, C, T, H, W), σ = exp(N(mean, std)) per
    sample. Inference's ``noise_strength s`` is ``log_sigma_mean = ln s``; training uses mean -3, std 0.5."""
    from diffusers.utils.torch_utils import randn_tensor

    batch = video.shape[0]
    log_sigma = randn_tensor((batch,), generator=generator, device=video.device, dtype=torch.float32)
    sigma = torch.exp(log_sigma * log_sigma_std + log_sigma_mean).to(video.dtype).view(batch, 1, 1, 1, 1)
    noise = randn_tensor(video.shape, generator=generator, device=video.device, dtype=video.dtype)
    given = (mask < 0.5).to(video.dtype).view(mask.shape[0] if mask.ndim == 2 else 1, 1, -1, 1, 1)
    return video + noise * sigma * given

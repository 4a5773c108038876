"""Haar wavelet transforms of WF-VAE, 2-D (per frame) and 3-D (causal in time), with their inverses.

Sub-band order follows the released checkpoints. 2-D: [LL, LH, HL, HH], each over all C input channels.
3-D: [LLL, LLH, LHL, LHH, HLL, HLH, HHL, HHH] (time, rows, columns). The 3-D filters use the released
coefficient 0.3536 (not exactly 1/(2*sqrt 2)), so analysis + synthesis has a gain of ~1.0003: kept, since
the trained weights expect it.

The 3-D analysis is causal: frame 0 is replicated once in front, so 1 + 2k frames become 1 + k; the
inverse drops that replicated frame again. While streaming (chunked encode/decode), only the first chunk
is treated that way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import CausalConv3d

HAAR_3D_COEFF = 0.3536
_SIGNS_2D = {  # rows x cols
    "aa": [[1, 1], [1, 1]],
    "ad": [[1, 1], [-1, -1]],
    "da": [[1, -1], [1, -1]],
    "dd": [[1, -1], [-1, 1]],
}
_SIGNS_3D = {  # time x rows x cols, in output order
    "h": [[[1, 1], [1, 1]], [[1, 1], [1, 1]]],
    "g": [[[1, -1], [1, -1]], [[1, -1], [1, -1]]],
    "hh": [[[1, 1], [-1, -1]], [[1, 1], [-1, -1]]],
    "gh": [[[1, -1], [-1, 1]], [[1, -1], [-1, 1]]],
    "h_v": [[[1, 1], [1, 1]], [[-1, -1], [-1, -1]]],
    "g_v": [[[1, -1], [1, -1]], [[-1, 1], [-1, 1]]],
    "hh_v": [[[1, 1], [-1, -1]], [[-1, -1], [1, 1]]],
    "gh_v": [[[1, -1], [-1, 1]], [[-1, 1], [1, -1]]],
}


def _filter_2d(name: str) -> torch.Tensor:
    return torch.tensor(_SIGNS_2D[name]).view(1, 1, 2, 2) / 2


def _filter_3d(name: str) -> torch.Tensor:
    return torch.tensor(_SIGNS_3D[name]).view(1, 1, 2, 2, 2) * HAAR_3D_COEFF


class HaarWavelet2D(nn.Module):
    """(B, C, T, H, W) -> (B, 4C, T, H/2, W/2), frame by frame."""

    def __init__(self):
        super().__init__()
        for name in _SIGNS_2D:
            self.register_buffer(name, _filter_2d(name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        filters = torch.cat([self.aa, self.ad, self.da, self.dd]).to(x.dtype)  # (4, 1, 2, 2)
        planes = x.transpose(1, 2).reshape(batch * frames * channels, 1, height, width)
        bands = F.conv2d(planes, filters, stride=2)  # (B·T·C, 4, H/2, W/2)
        bands = bands.view(batch, frames, channels, 4, height // 2, width // 2)
        return bands.permute(0, 3, 2, 1, 4, 5).reshape(batch, 4 * channels, frames, height // 2, width // 2)


class InverseHaarWavelet2D(nn.Module):
    """(B, 4C, T, h, w) -> (B, C, T, 2h, 2w); the exact inverse of :class:`HaarWavelet2D`."""

    def __init__(self):
        super().__init__()
        for name in _SIGNS_2D:
            self.register_buffer(name, _filter_2d(name))

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        batch, channels4, frames, height, width = coeffs.shape
        channels = channels4 // 4
        filters = torch.cat([self.aa, self.ad, self.da, self.dd]).to(coeffs.dtype)  # (4, 1, 2, 2)
        bands = coeffs.view(batch, 4, channels, frames, height, width).permute(0, 3, 2, 1, 4, 5)
        bands = bands.reshape(batch * frames * channels, 4, height, width)
        planes = F.conv_transpose2d(bands, filters, stride=2)  # (B·T·C, 1, 2h, 2w)
        return planes.view(batch, frames, channels, 2 * height, 2 * width).transpose(1, 2)


class HaarWavelet3D(nn.Module):
    """(B, C, 1+2k, H, W) -> (B, 8C, 1+k, H/2, W/2), causal in time.

    The eight filters are stored as frozen parameters of eight 1->1 causal convolutions (the released
    key layout); the transform itself runs as one convolution with the stacked filters.
    """

    def __init__(self):
        super().__init__()
        for name in _SIGNS_3D:
            conv = CausalConv3d(1, 1, kernel_size=2, stride=2, bias=False)
            with torch.no_grad():
                conv.conv.weight.copy_(_filter_3d(name))
            conv.requires_grad_(False)
            self.add_module(f"{name}_conv", conv)
        self.streaming = False
        self.started = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        if not (self.streaming and self.started):
            x = torch.cat([x[:, :, :1], x], dim=2)  # replicate frame 0 once
        self.started = self.streaming
        filters = torch.cat([getattr(self, f"{name}_conv").conv.weight for name in _SIGNS_3D]).to(x.dtype)
        planes = x.reshape(batch * channels, 1, x.shape[2], height, width)
        bands = F.conv3d(planes, filters, stride=2)  # (B·C, 8, T', H/2, W/2)
        bands = bands.view(batch, channels, 8, *bands.shape[2:]).transpose(1, 2)
        return bands.reshape(batch, 8 * channels, *bands.shape[3:])


class InverseHaarWavelet3D(nn.Module):
    """(B, 8C, 1+k, h, w) -> (B, C, 1+2k, 2h, 2w): drops the replicated frame 0 (first chunk only)."""

    def __init__(self):
        super().__init__()
        for name in _SIGNS_3D:
            self.register_buffer(name, _filter_3d(name))
        self.streaming = False
        self.started = False

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        batch, channels8, frames, height, width = coeffs.shape
        channels = channels8 // 8
        filters = torch.cat([getattr(self, name) for name in _SIGNS_3D]).to(coeffs.dtype)  # (8, 1, 2, 2, 2)
        bands = coeffs.view(batch, 8, channels, frames, height, width).transpose(1, 2)
        bands = bands.reshape(batch * channels, 8, frames, height, width)
        video = F.conv_transpose3d(bands, filters, stride=2)  # (B·C, 1, 2T, 2h, 2w)
        if not (self.streaming and self.started):
            video = video[:, :, 1:]
        self.started = self.streaming
        return video.view(batch, channels, *video.shape[2:])

"""Building blocks of WF-VAE: causal 3-D convolution, per-frame 2-D layers, residual blocks, per-frame
attention and the resampling layers. Parameter names follow the released checkpoints.

Streaming: for chunked (tiled) encode/decode, modules that look back in time keep the frames the next
chunk needs (``cache``). The owner model switches ``streaming`` on for one chunked call and clears every
cache afterwards; with streaming off, every call is independent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B·T, C, H, W)."""
    batch, channels, frames, height, width = x.shape
    return x.transpose(1, 2).reshape(batch * frames, channels, height, width)


def unfold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B·T, C, H, W) -> (B, C, T, H, W)."""
    return x.view(-1, frames, *x.shape[1:]).transpose(1, 2)


class CausalConv3d(nn.Module):
    """A Conv3d that only looks back in time: frame 0 is replicated (k_t - 1) times in front.

    Spatial padding is zeros as given; temporal padding is always causal. While streaming, the frames
    kept from the previous chunk replace the replicated ones; ``cache_offset`` excludes that many
    trailing (look-ahead) frames from what is kept.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        kernel = _triple(kernel_size)
        stride = _triple(stride)
        padding = _triple(padding)
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel, stride=stride, padding=(0, padding[1], padding[2]), bias=bias
        )
        self.time_kernel = kernel[0]
        self.frames_to_keep = (kernel[0] - 1) // stride[0]
        self.streaming = False
        self.cache: torch.Tensor | None = None
        self.cache_offset = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            x = torch.cat([self.cache, x], dim=2)
        elif self.time_kernel > 1:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_kernel - 1, -1, -1), x], dim=2)
        if self.streaming and self.time_kernel > 1:
            history = x[:, :, : x.shape[2] - self.cache_offset]
            self.cache = history[:, :, history.shape[2] - self.frames_to_keep :].clone()
        return self.conv(x)


class FrameConv2d(nn.Conv2d):
    """nn.Conv2d applied to every frame of a (B, C, T, H, W) video (keys ``weight``/``bias``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return super().forward(x)
        return unfold_frames(super().forward(fold_frames(x)), x.shape[2])


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels at every position of (B, C, ...); per position, so chunking is exact."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def make_norm(channels: int, norm_type: str) -> nn.Module:
    if norm_type == "layernorm":
        return ChannelLayerNorm(channels)
    if norm_type == "groupnorm":
        return nn.GroupNorm(32, channels, eps=1e-6)
    raise ValueError(f"norm_type must be 'layernorm' or 'groupnorm', got {norm_type!r}")


class ResnetBlock2D(nn.Module):
    """Per-frame residual block: (norm, swish, 3x3 conv) x 2 plus a 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, norm_type: str, dropout: float = 0.0):
        super().__init__()
        self.norm1 = make_norm(in_channels, norm_type)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = make_norm(out_channels, norm_type)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        x = fold_frames(x)  # (B·T, C, H, W)
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return unfold_frames(shortcut + h, frames)


class ResnetBlock3D(nn.Module):
    """Residual block with causal 3x3x3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, norm_type: str, dropout: float = 0.0):
        super().__init__()
        self.norm1 = make_norm(in_channels, norm_type)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, padding=1)
        self.norm2 = make_norm(out_channels, norm_type)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = CausalConv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class FrameAttention(nn.Module):
    """Single-head self-attention over the H·W positions of each frame, with a residual."""

    def __init__(self, channels: int, norm_type: str):
        super().__init__()
        self.norm = make_norm(channels, norm_type)
        self.q = CausalConv3d(channels, channels, 1)
        self.k = CausalConv3d(channels, channels, 1)
        self.v = CausalConv3d(channels, channels, 1)
        self.proj_out = CausalConv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        h = self.norm(x)

        def tokens(t):  # (B, C, T, H, W) -> (B·T, 1, H·W, C)
            return t.permute(0, 2, 3, 4, 1).reshape(batch * frames, 1, height * width, channels)

        out = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        out = out.view(batch, frames, height, width, channels).permute(0, 4, 1, 2, 3)
        return x + self.proj_out(out)


class Downsample2D(nn.Module):
    """Per-frame 2x spatial downsampling: pad right/bottom by one, 3x3 conv with stride 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        return unfold_frames(self.conv(F.pad(fold_frames(x), (0, 1, 0, 1))), frames)


class Upsample2D(nn.Module):
    """Per-frame 2x nearest upsampling followed by a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        return unfold_frames(self.conv(F.interpolate(fold_frames(x), scale_factor=2.0, mode="nearest")), frames)


class Downsample3D(nn.Module):
    """2x in time, rows and columns: causal 3x3x3 conv with stride 2 (1 + 2k frames -> 1 + k)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1, 0, 0)))


class Upsample3D(nn.Module):
    """2x in time, rows and columns (1 + k frames -> 1 + 2k), then a causal 3x3x3 conv.

    Frame 0 is only upsampled in space; frames 1.. are interpolated in time (``t_interpolation``). While
    streaming, the previous chunk's last real frame is prepended so the interpolation sees its left
    neighbour, and the two frames it produces are dropped.
    """

    def __init__(self, in_channels: int, out_channels: int, t_interpolation: str = "trilinear"):
        super().__init__()
        self.t_interpolation = t_interpolation
        self.conv = CausalConv3d(in_channels, out_channels, 3, padding=1)
        self.streaming = False
        self.cache: torch.Tensor | None = None

    def _upsample_time(self, x):
        return F.interpolate(x, scale_factor=(2, 1, 1), mode=self.t_interpolation)

    @staticmethod
    def _upsample_space(x):
        return F.interpolate(x, scale_factor=(1, 2, 2), mode="trilinear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            x = torch.cat([self.cache, x], dim=2)
            self.cache = x[:, :, -2:-1].clone()  # last frame before the look-ahead frame
            x = self._upsample_space(self._upsample_time(x)[:, :, 2:])
        else:
            if self.streaming:
                self.cache = x[:, :, -1:].clone()
            if x.shape[2] > 1:
                first, rest = x[:, :, :1], x[:, :, 1:]
                x = torch.cat([self._upsample_space(first), self._upsample_space(self._upsample_time(rest))], dim=2)
            else:
                x = self._upsample_space(x)
        return self.conv(x)


def _triple(value) -> tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value, value)

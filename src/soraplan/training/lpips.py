"""LPIPS perceptual distance (VGG16 variant) for VAE training, loaded from a local weights file.

Nothing is downloaded: the user provides one file (safetensors or a torch state dict) holding the VGG16
convolution weights under torchvision's names (``features.0.weight`` ... ``features.28.bias``) and the
five LPIPS heads under the lpips package's names (``lin0.model.1.weight`` ... ``lin4.model.1.weight``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# VGG16 "features": (index, in, out) of each conv; a max-pool follows indices 2, 7, 14, 21
_VGG16_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
                (26, 512, 512), (28, 512, 512)]
_TAPS = (2, 7, 14, 21, 28)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_POOL_AFTER = (2, 7, 14, 21)
_TAP_CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class _LinearHead(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """d(x, y) for images (N, 3, H, W) in [-1, 1] -> (N,) distances."""

    def __init__(self):
        super().__init__()
        self.features = nn.ModuleDict({str(i): nn.Conv2d(cin, cout, 3, padding=1) for i, cin, cout in _VGG16_CONVS})
        for k, channels in enumerate(_TAP_CHANNELS):
            self.add_module(f"lin{k}", _LinearHead(channels))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_file(cls, path: str | Path) -> "LPIPS":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS weights file {path} does not exist")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"LPIPS weights file {path} lacks {len(missing)} tensors, e.g. {missing[0]}")
        return model

    def _taps(self, x):
        x = (x - self.shift) / self.scale
        taps = []
        for index, _, _ in _VGG16_CONVS:
            x = F.relu(self.features[str(index)](x))
            if index in _TAPS:
                taps.append(x)
            if index in _POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        distance = 0.0
        for k, (fx, fy) in enumerate(zip(self._taps(x), self._taps(y))):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            distance = distance + getattr(self, f"lin{k}").model((fx - fy) ** 2).mean(dim=(2, 3))
        return distance.flatten()

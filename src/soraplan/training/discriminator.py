"""Patch-GAN discriminator over video clips, as used for WF-VAE training (3-D convolutions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator3D(nn.Module):
    """(B, 3, T, H, W) -> patch logits. ``n_layers`` stride-2 stages; time is halved in the first two."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 4):
        super().__init__()
        layers = [nn.Conv3d(in_channels, base_channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = base_channels
        for n in range(1, n_layers):
            out = base_channels * min(2**n, 8)
            layers += [
                nn.Conv3d(width, out, 3, stride=(2 if n == 1 else 1, 2, 2), padding=1, bias=False),
                nn.BatchNorm3d(out),
                nn.LeakyReLU(0.2, True),
            ]
            width = out
        out = base_channels * min(2**n_layers, 8)
        layers += [
            nn.Conv3d(width, out, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(out),
            nn.LeakyReLU(0.2, True),
            nn.Conv3d(out, 1, 3, stride=1, padding=1),
        ]
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.main(video)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv3d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm3d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())

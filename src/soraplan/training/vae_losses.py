"""The WF-VAE training objective.

generator: reconstruction (L1 or L2, summed over pixels, averaged over frames) + kl_weight · KL
           + wavelet_weight · energy-flow wavelet loss + perceptual_weight · LPIPS (when available)
           + adaptive_weight · GAN loss (from ``disc_start`` on)
discriminator: hinge loss on real vs reconstructed clips.

The wavelet loss pairs the encoder's energy-flow Haar coefficients with the decoder's predictions of
them (the reference declares this loss but its model never returns the coefficients, so it is inert).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .discriminator import hinge_d_loss


@dataclass
class VAELossWeights:
    kl_weight: float = 1e-6
    wavelet_weight: float = 0.1
    perceptual_weight: float = 1.0
    disc_weight: float = 0.5
    loss_type: str = "l1"


def reconstruction_loss(video: torch.Tensor, recon: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Per-frame sum over (C, H, W), mean over batch and frames."""
    diff = (video - recon).abs() if loss_type == "l1" else (video - recon) ** 2
    frames = video.shape[0] * video.shape[2]
    return diff.sum() / frames


def kl_loss(posterior) -> torch.Tensor:
    """KL to N(0, I), summed over every latent element, mean over the batch."""
    terms = posterior.mean**2 + posterior.var - 1.0 - posterior.logvar
    return 0.5 * terms.sum() / posterior.mean.shape[0]


def wavelet_loss(coeffs) -> torch.Tensor:
    enc_l1, dec_l1, enc_l2, dec_l2 = coeffs
    batch = enc_l1.shape[0]
    return ((enc_l1 - dec_l1).abs().sum() + (enc_l2 - dec_l2).abs().sum()) / batch


def adaptive_gan_weight(rec_loss, gan_loss, last_layer: torch.Tensor, disc_weight: float) -> torch.Tensor:
    """Scale the GAN gradient to the reconstruction gradient's size at the decoder's last layer."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, 1e4).detach() * disc_weight


def generator_loss(video, recon, posterior, weights: VAELossWeights, *, coeffs=None, perceptual=None,
                   discriminator=None, last_layer=None) -> tuple[torch.Tensor, dict[str, float]]:
    rec = reconstruction_loss(video, recon, weights.loss_type)
    log = {"rec_loss": rec.item()}
    if perceptual is not None:
        frames_real = video.transpose(1, 2).flatten(0, 1)
        frames_fake = recon.transpose(1, 2).flatten(0, 1)
        p_loss = perceptual(frames_real, frames_fake).sum() / frames_real.shape[0]
        rec = rec + weights.perceptual_weight * p_loss
        log["perceptual_loss"] = p_loss.item()
    kl = kl_loss(posterior)
    total = rec + weights.kl_weight * kl
    log["kl_loss"] = kl.item()
    if coeffs is not None:
        wl = wavelet_loss(coeffs)
        total = total + weights.wavelet_weight * wl
        log["wavelet_loss"] = wl.item()
    if discriminator is not None:
        gan = -discriminator(recon).mean()
        d_weight = adaptive_gan_weight(rec, gan, last_layer, weights.disc_weight)
        total = total + d_weight * gan
        log.update(gan_loss=gan.item(), d_weight=d_weight.item())
    log["loss"] = total.item()
    return total, log


def discriminator_loss(discriminator, video, recon) -> tuple[torch.Tensor, dict[str, float]]:
    loss = hinge_d_loss(discriminator(video.detach()), discriminator(recon.detach()))
    return loss, {"disc_loss": loss.item()}

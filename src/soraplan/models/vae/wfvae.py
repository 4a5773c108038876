"""WF-VAE (wavelet-flow video autoencoder) of Open-Sora Plan v1.3: 4x time, 8x8 space, ``latent_dim``
channels.

    video (B, 3, 1+4k, H, W) in [-1, 1]
      -> Haar 3-D (B, 24, 1+2k, H/2, W/2)
      -> encoder: main path (2-D blocks, 2x space; 3-D blocks, 2x time+space) joined by two "energy
         flow" shortcuts fed from further Haar transforms of the low-frequency band
      -> moments (B, 2z, 1+k, H/8, W/8) -> diagonal Gaussian posterior
    latent (B, z, 1+k, H/8, W/8) -> decoder (mirror image, inverse Haar shortcuts)
      -> Haar 3-D coefficients -> inverse Haar 3-D -> video (B, 3, 1+4k, H, W)

Everything is causal in time: frame 0 is encoded on its own (an image is the 1-frame case).

Long videos: ``enable_tiling()`` encodes and decodes in temporal chunks carrying causal state between
chunks; large frames: ``enable_spatial_tiling()`` works on overlapping, blended spatial tiles. Every chunk of the decoder gets one latent frame of look-ahead so temporal interpolation sees
its right neighbour; the result equals the un-chunked one up to float rounding for any chunk sizes
(the reference skips the look-ahead for the chunk before the last one, which breaks that equality for
some lengths).

Latent normalisation for the diffusion model, ``(z - shift) * scale`` per channel, lives here in
:meth:`WFVAE.normalize_latents` / :meth:`WFVAE.denormalize_latents`.
"""

from __future__ import annotations

import contextlib

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .tiling import blend_spatial_tiles
from .layers import (
    CausalConv3d,
    Downsample2D,
    Downsample3D,
    FrameAttention,
    FrameConv2d,
    ResnetBlock2D,
    ResnetBlock3D,
    Upsample2D,
    Upsample3D,
    make_norm,
    swish,
)
from .wavelets import HaarWavelet2D, HaarWavelet3D, InverseHaarWavelet2D, InverseHaarWavelet3D

TIME_STRIDE, SPACE_STRIDE = 4, 8

# the only block/wavelet choices of the released model (config strings are reference class names)
SUPPORTED_BLOCKS = {
    "l1_dowmsample_block": "Downsample",
    "l1_downsample_wavelet": "HaarWaveletTransform2D",
    "l2_dowmsample_block": "Spatial2xTime2x3DDownsample",
    "l2_downsample_wavelet": "HaarWaveletTransform3D",
    "l1_upsample_block": "Upsample",
    "l1_upsample_wavelet": "InverseHaarWaveletTransform2D",
    "l2_upsample_block": "Spatial2xTime2x3DUpsample",
    "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
}


def _mid_blocks(in_channels, channels, out_channels, use_attention, norm_type, dropout):
    blocks = [ResnetBlock3D(in_channels, channels, norm_type, dropout)]
    if use_attention:
        blocks.append(FrameAttention(channels, norm_type))
    blocks.append(ResnetBlock3D(channels, out_channels, norm_type, dropout))
    return nn.Sequential(*blocks)


class Encoder(nn.Module):
    """Haar-3-D coefficients (B, 24, 1+2k, H/2, W/2) -> moments (B, 2z, 1+k, H/8, W/8)."""

    def __init__(self, latent_dim, base_channels, num_resblocks, energy_flow_hidden_size, dropout,
                 use_attention, norm_type):
        super().__init__()
        b, e = base_channels, energy_flow_hidden_size
        self.down1 = nn.Sequential(
            FrameConv2d(24, b, 3, padding=1),
            *[ResnetBlock2D(b, b, norm_type, dropout) for _ in range(num_resblocks)],
            Downsample2D(b, b),
        )
        self.down2 = nn.Sequential(
            FrameConv2d(b + e, 2 * b, 3, padding=1),
            *[ResnetBlock3D(2 * b, 2 * b, norm_type, dropout) for _ in range(num_resblocks)],
            Downsample3D(2 * b, 2 * b),
        )
        self.connect_l1 = FrameConv2d(12, e, 3, padding=1)
        self.connect_l2 = FrameConv2d(24, e, 3, padding=1)
        self.mid = _mid_blocks(2 * b + e, 4 * b, 4 * b, use_attention, norm_type, dropout)
        self.norm_out = make_norm(4 * b, norm_type)
        self.conv_out = CausalConv3d(4 * b, 2 * latent_dim, 3, padding=1)
        self.wavelet_tranform_l1 = HaarWavelet2D()  # (sic) released key names
        self.wavelet_tranform_l2 = HaarWavelet3D()

    def forward(self, coeffs: torch.Tensor, return_coeffs: bool = False):
        """Moments; with ``return_coeffs`` also the energy-flow Haar coefficients (l1, l2) it used."""
        l1_coeffs = self.wavelet_tranform_l1(coeffs[:, :3])  # (B, 12, T, H/4, W/4) from the LLL band
        l2_coeffs = self.wavelet_tranform_l2(l1_coeffs[:, :3])  # (B, 24, T', H/8, W/8)
        h = self.down1(coeffs)  # (B, b, T, H/4, W/4)
        h = self.down2(torch.cat([h, self.connect_l1(l1_coeffs)], dim=1))  # (B, 2b, T', H/8, W/8)
        h = self.mid(torch.cat([h, self.connect_l2(l2_coeffs)], dim=1))  # (B, 4b, T', H/8, W/8)
        moments = self.conv_out(swish(self.norm_out(h)))
        return (moments, (l1_coeffs, l2_coeffs)) if return_coeffs else moments


class Decoder(nn.Module):
    """Latent (B, z, 1+k, h, w) -> Haar-3-D coefficients (B, 24, 1+2k, 4h, 4w)."""

    def __init__(self, latent_dim, base_channels, num_resblocks, energy_flow_hidden_size, dropout,
                 use_attention, norm_type, t_interpolation, connect_res_layer_num):
        super().__init__()
        b, d = base_channels, energy_flow_hidden_size
        self.energy_flow_hidden_size = d
        self.conv_in = CausalConv3d(latent_dim, 4 * b, 3, padding=1)
        self.mid = _mid_blocks(4 * b, 4 * b, 4 * b + d, use_attention, norm_type, dropout)
        self.up2 = nn.Sequential(
            *[ResnetBlock3D(4 * b, 4 * b, norm_type, dropout) for _ in range(num_resblocks)],
            Upsample3D(4 * b, 4 * b, t_interpolation),
            ResnetBlock3D(4 * b, 4 * b + d, norm_type, dropout),
        )
        self.up1 = nn.Sequential(
            *[ResnetBlock3D(4 * b if i == 0 else 2 * b, 2 * b, norm_type, dropout) for i in range(num_resblocks)],
            Upsample2D(2 * b, 2 * b),
            ResnetBlock3D(2 * b, 2 * b, norm_type, dropout),
        )
        self.layer = nn.Sequential(ResnetBlock3D(2 * b, b, norm_type, dropout), ResnetBlock3D(b, b, norm_type, dropout))
        self.connect_l1 = nn.Sequential(
            *[ResnetBlock3D(b, b, norm_type, dropout) for _ in range(connect_res_layer_num)],
            FrameConv2d(b, 12, 3, padding=1),
        )
        self.connect_l2 = nn.Sequential(
            *[ResnetBlock3D(b, b, norm_type, dropout) for _ in range(connect_res_layer_num)],
            FrameConv2d(b, 24, 3, padding=1),
        )
        self.norm_out = make_norm(b, norm_type)
        self.conv_out = FrameConv2d(b, 24, 3, padding=1)
        self.inverse_wavelet_tranform_l1 = InverseHaarWavelet2D()
        self.inverse_wavelet_tranform_l2 = InverseHaarWavelet3D()

    def forward(self, z: torch.Tensor, return_coeffs: bool = False):
        """Coefficients; with ``return_coeffs`` also its energy-flow predictions of the encoder's (l1, l2)."""
        d = self.energy_flow_hidden_size
        h = self.mid(self.conv_in(z))  # (B, 4b + d, T', h, w)
        l2_coeffs = self.connect_l2(h[:, -d:])  # (B, 24, T', h, w)
        l2 = self.inverse_wavelet_tranform_l2(l2_coeffs)  # (B, 3, T, 2h, 2w)
        h = self.up2(h[:, :-d])  # (B, 4b + d, T, 2h, 2w)
        l1_coeffs = self.connect_l1(h[:, -d:])  # (B, 12, T, 2h, 2w)
        l1_coeffs = torch.cat([l1_coeffs[:, :3] + l2, l1_coeffs[:, 3:]], dim=1)
        l1 = self.inverse_wavelet_tranform_l1(l1_coeffs)  # (B, 3, T, 4h, 4w)
        h = self.layer(self.up1(h[:, :-d]))  # (B, b, T, 4h, 4w)
        h = self.conv_out(swish(self.norm_out(h)))  # (B, 24, T, 4h, 4w)
        coeffs = torch.cat([h[:, :3] + l1, h[:, 3:]], dim=1)
        return (coeffs, (l1_coeffs, l2_coeffs)) if return_coeffs else coeffs


class WFVAE(ModelMixin, ConfigMixin):
    """The WF-VAE of Open-Sora Plan v1.3 (reference class ``WFVAEModel``; released as
    ``WFVAEModel_D8_4x8x8``). Config fields and defaults are the reference's."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 8,
        base_channels: int = 128,
        encoder_num_resblocks: int = 2,
        encoder_energy_flow_hidden_size: int = 64,
        decoder_num_resblocks: int = 2,
        decoder_energy_flow_hidden_size: int = 128,
        use_attention: bool = True,
        dropout: float = 0.0,
        norm_type: str = "groupnorm",
        t_interpolation: str = "nearest",
        connect_res_layer_num: int = 1,
        scale: list[float] | tuple[float, ...] = (0.18215,) * 8,
        shift: list[float] | tuple[float, ...] = (0.0,) * 8,
        l1_dowmsample_block: str = "Downsample",
        l1_downsample_wavelet: str = "HaarWaveletTransform2D",
        l2_dowmsample_block: str = "Spatial2xTime2x3DDownsample",
        l2_downsample_wavelet: str = "HaarWaveletTransform3D",
        l1_upsample_block: str = "Upsample",
        l1_upsample_wavelet: str = "InverseHaarWaveletTransform2D",
        l2_upsample_block: str = "Spatial2xTime2x3DUpsample",
        l2_upsample_wavelet: str = "InverseHaarWaveletTransform3D",
    ):
        super().__init__()
        _check_config(locals())
        self.encoder = Encoder(latent_dim, base_channels, encoder_num_resblocks, encoder_energy_flow_hidden_size,
                               dropout, use_attention, norm_type)
        self.decoder = Decoder(latent_dim, base_channels, decoder_num_resblocks, decoder_energy_flow_hidden_size,
                               dropout, use_attention, norm_type, t_interpolation, connect_res_layer_num)
        # the decoder's look-ahead frame must not enter the causal state carried to the next chunk:
        # one latent frame before the temporal upsampling, two coefficient frames after it
        up2_tail = self.decoder.up2[-2:]
        for part in (self.decoder.conv_in, self.decoder.mid, self.decoder.connect_l2, self.decoder.up2):
            _set_cache_offset(part, 1)
        for part in (up2_tail, self.decoder.up1, self.decoder.connect_l1, self.decoder.layer):
            _set_cache_offset(part, 2)
        self.use_tiling = False
        self.t_chunk_enc = 16  # Haar-3-D coefficient frames per encoder chunk (even)
        self.t_chunk_dec = 4  # latent frames per decoder chunk
        self.tile_sample_size: int | None = None  # spatial tiles (pixels); None = off
        self.tile_overlap = 0

    # ----------------------------------------------------------------------------------------------
    # public API

    def enable_tiling(self, use_tiling: bool = True, t_chunk_enc: int | None = None, t_chunk_dec: int | None = None):
        """Encode/decode in temporal chunks (bounded memory for long videos)."""
        if t_chunk_enc is not None:
            if t_chunk_enc < 2 or t_chunk_enc % 2:
                raise ValueError(f"t_chunk_enc must be an even number >= 2 (coefficient frames), got {t_chunk_enc}")
            self.t_chunk_enc = t_chunk_enc
        if t_chunk_dec is not None:
            if t_chunk_dec < 1:
                raise ValueError(f"t_chunk_dec must be >= 1 (latent frames), got {t_chunk_dec}")
            self.t_chunk_dec = t_chunk_dec
        self.use_tiling = use_tiling

    def disable_tiling(self):
        self.use_tiling = False

    def enable_spatial_tiling(self, tile_sample_size: int = 256, tile_overlap: int = 64):
        """Encode/decode frames larger than ``tile_sample_size`` pixels as overlapping tiles, blended
        across ``tile_overlap`` pixels: memory bounded by the tile, output approximate at the seams."""
        if tile_sample_size < 32 or tile_sample_size % SPACE_STRIDE:
            raise ValueError(f"tile_sample_size must be a multiple of 8 and at least 32, got {tile_sample_size}")
        if not 0 <= tile_overlap < tile_sample_size or tile_overlap % SPACE_STRIDE:
            raise ValueError(f"tile_overlap must be a multiple of 8 below the tile size, got {tile_overlap}")
        self.tile_sample_size, self.tile_overlap = tile_sample_size, tile_overlap

    def disable_spatial_tiling(self):
        self.tile_sample_size = None

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """Video (B, 3, 1+4k, H, W) in [-1, 1], H and W multiples of 8 -> posterior over
        (B, latent_dim, 1+k, H/8, W/8) with ``.mode()`` and ``.sample(generator=...)``."""
        check_video_shape(x)
        if self.tile_sample_size is None:
            moments = self._encode_moments(x)
        else:
            moments = blend_spatial_tiles(x, self._encode_moments, self.tile_sample_size, self.tile_overlap,
                                          scale=(1, SPACE_STRIDE), align=SPACE_STRIDE)
        return DiagonalGaussianDistribution(moments)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, latent_dim, T', h, w) -> video (B, 3, 1 + 4(T'-1), 8h, 8w)."""
        if z.ndim != 5 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"latent must be (B, {self.config.latent_dim}, T, h, w), got {tuple(z.shape)}"
            )
        if self.tile_sample_size is None:
            return self._decode_video(z)
        return blend_spatial_tiles(z, self._decode_video, self.tile_sample_size // SPACE_STRIDE,
                                   self.tile_overlap // SPACE_STRIDE, scale=(SPACE_STRIDE, 1))

    def forward(
        self,
        x: torch.Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
        return_wavelet_coeffs: bool = False,
    ):
        """Reconstruction and posterior: ``(decode(z), posterior)``, z the posterior mode or a sample.

        With ``return_wavelet_coeffs`` (training, no chunking) a third output pairs the encoder's
        energy-flow Haar coefficients with the decoder's predictions of them:
        ``(enc_l1, dec_l1, enc_l2, dec_l2)``, the targets of the wavelet loss.
        """
        if not return_wavelet_coeffs:
            posterior = self.encode(x)
            z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
            return self.decode(z), posterior
        check_video_shape(x)
        moments, (enc_l1, enc_l2) = self.encoder(HaarWavelet3D().to(x.device)(x), return_coeffs=True)
        posterior = DiagonalGaussianDistribution(moments)
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        coeffs, (dec_l1, dec_l2) = self.decoder(z, return_coeffs=True)
        video = InverseHaarWavelet3D().to(z.device)(coeffs)
        return video, posterior, (enc_l1, dec_l1, enc_l2, dec_l2)

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latent -> diffusion latent: ``(z - shift) * scale`` per channel."""
        shift, scale = self._latent_stats(z)
        return (z - shift) * scale

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion latent -> VAE latent: ``z / scale + shift`` per channel."""
        shift, scale = self._latent_stats(z)
        return z / scale + shift

    def get_last_layer(self) -> torch.Tensor:
        """Weight the adaptive GAN loss weight is computed against."""
        return self.decoder.conv_out.weight

    # ----------------------------------------------------------------------------------------------

    def _latent_stats(self, z):
        shape = (1, -1) + (1,) * (z.ndim - 2)
        shift = torch.tensor(self.config.shift, device=z.device, dtype=z.dtype).view(shape)
        scale = torch.tensor(self.config.scale, device=z.device, dtype=z.dtype).view(shape)
        return shift, scale

    def _encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        coeffs = HaarWavelet3D().to(x.device)(x)  # (B, 24, 1+2k, H/2, W/2)
        return self._encode_chunked(coeffs) if self.use_tiling else self.encoder(coeffs)

    def _decode_video(self, z: torch.Tensor) -> torch.Tensor:
        coeffs = self._decode_chunked(z) if self.use_tiling else self.decoder(z)
        return InverseHaarWavelet3D().to(z.device)(coeffs)

    def _encode_chunked(self, coeffs: torch.Tensor) -> torch.Tensor:
        with streaming(self.encoder):
            return torch.cat(
                [self.encoder(coeffs[:, :, start:end]) for start, end in chunk_bounds(coeffs.shape[2], self.t_chunk_enc)],
                dim=2,
            )

    def _decode_chunked(self, z: torch.Tensor) -> torch.Tensor:
        frames = z.shape[2]
        pieces = []
        with streaming(self.decoder):
            for start, end in chunk_bounds(frames, self.t_chunk_dec):
                if end < frames:  # one frame of look-ahead; its two output frames are dropped
                    pieces.append(self.decoder(z[:, :, start:end + 1])[:, :, :-2])
                else:
                    pieces.append(self.decoder(z[:, :, start:end]))
        return torch.cat(pieces, dim=2)


def chunk_bounds(frames: int, chunk: int) -> list[tuple[int, int]]:
    """[(0, 1), (1, 1 + c), (1 + c, 1 + 2c), ...] clipped to ``frames``: frame 0 always alone."""
    bounds = [(0, 1)]
    start = 1
    while start < frames:
        bounds.append((start, min(frames, start + chunk)))
        start = bounds[-1][1]
    return bounds


@contextlib.contextmanager
def streaming(module: nn.Module):
    """Switch causal state on for one chunked pass over ``module``; always start and end clean."""
    stateful = [m for m in module.modules() if hasattr(m, "streaming")]

    def reset(on: bool):
        for m in stateful:
            m.streaming = on
            if hasattr(m, "cache"):
                m.cache = None
            if hasattr(m, "started"):
                m.started = False

    reset(True)
    try:
        yield
    finally:
        reset(False)


def check_video_shape(x: torch.Tensor) -> None:
    """A clear error for shapes the VAE cannot encode, naming the nearest valid values."""
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, T, H, W), got {tuple(x.shape)}")
    frames, height, width = x.shape[2:]
    problems = []
    if (frames - 1) % TIME_STRIDE:
        lower = (frames - 1) // TIME_STRIDE * TIME_STRIDE + 1
        problems.append(f"{frames} frames is not 4k+1 (nearest: {lower} or {lower + TIME_STRIDE})")
    for name, size in (("height", height), ("width", width)):
        if size % SPACE_STRIDE or size == 0:
            lower = size // SPACE_STRIDE * SPACE_STRIDE
            options = f"{lower} or {lower + SPACE_STRIDE}" if lower else f"{SPACE_STRIDE}"
            problems.append(f"{name} {size} is not a multiple of 8 (nearest: {options})")
    if problems:
        raise ValueError("cannot encode this video: " + "; ".join(problems))


def _set_cache_offset(module: nn.Module, offset: int) -> None:
    for m in module.modules():
        if hasattr(m, "cache_offset"):
            m.cache_offset = offset


def _check_config(config: dict) -> None:
    for field, supported in SUPPORTED_BLOCKS.items():
        if config[field] != supported:
            raise ValueError(f"WF-VAE config {field}={config[field]!r} is not supported (the release uses {supported!r})")
    if config["decoder_energy_flow_hidden_size"] != config["base_channels"]:
        raise ValueError(
            "decoder_energy_flow_hidden_size must equal base_channels "
            f"({config['decoder_energy_flow_hidden_size']} != {config['base_channels']}): the decoder's energy-flow "
            "branches take base_channels inputs"
        )
    if config["norm_type"] == "groupnorm" and config["base_channels"] % 32:
        raise ValueError(f"norm_type='groupnorm' needs base_channels divisible by 32, got {config['base_channels']}")
    for name in ("scale", "shift"):
        if len(config[name]) != config["latent_dim"]:
            raise ValueError(f"{name} must have latent_dim={config['latent_dim']} entries, got {len(config[name])}")
    if config["t_interpolation"] not in ("nearest", "trilinear"):
        raise ValueError(f"t_interpolation must be 'nearest' or 'trilinear', got {config['t_interpolation']!r}")

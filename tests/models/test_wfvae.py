"""WF-VAE: reference parity, exact temporal chunking, shapes and errors, latent normalisation."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from soraplan.models.vae import WFVAE, chunk_bounds
from soraplan.models.checkpoints import checkpoint_shapes

from ..conftest import randomize_, require_parity_dir

TOLERANCE = 1e-4

RELEASE_CONFIG = dict(  # WFVAEModel_D8_4x8x8
    latent_dim=8, base_channels=128, encoder_energy_flow_hidden_size=128, decoder_energy_flow_hidden_size=128,
    norm_type="layernorm", t_interpolation="trilinear",
)


def tiny_vae(seed=0, **overrides) -> WFVAE:
    config = dict(latent_dim=8, base_channels=8, encoder_energy_flow_hidden_size=8,
                  decoder_energy_flow_hidden_size=8, norm_type="layernorm", t_interpolation="trilinear")
    return randomize_(WFVAE(**{**config, **overrides}), seed=seed).eval()


def max_err(a, b):
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def reference():
    folder = require_parity_dir() / "wfvae"
    vae, info = WFVAE.from_pretrained(folder, output_loading_info=True)
    assert all(not v for v in info.values()), info
    return folder, vae.eval(), load_file(folder / "io.safetensors")


def test_fixture_folder_loads_strictly(reference):
    folder, vae, _ = reference
    assert {k: tuple(v.shape) for k, v in vae.state_dict().items()} == checkpoint_shapes(folder)
    stored = load_file(folder / "diffusion_pytorch_model.safetensors")
    for key, value in vae.state_dict().items():
        assert torch.equal(value, stored[key]), key


def test_fixture_encode_decode(reference):
    _, vae, io = reference
    with torch.no_grad():
        posterior = vae.encode(io["x"])
        assert max_err(posterior.mode(), io["posterior_mean"]) <= 1e-5
        assert max_err(posterior.logvar, io["posterior_logvar"]) <= 1e-5
        assert max_err(vae.decode(io["posterior_mean"]), io["decoded_from_mean"]) <= TOLERANCE


@pytest.mark.parametrize("t_chunk_enc,t_chunk_dec", [(16, 4), (8, 4), (2, 1)])
def test_fixture_chunked(reference, t_chunk_enc, t_chunk_dec):
    _, vae, io = reference
    prefix = f"tiled_e{t_chunk_enc}_d{t_chunk_dec}"
    vae.enable_tiling(True, t_chunk_enc=t_chunk_enc, t_chunk_dec=t_chunk_dec)
    try:
        with torch.no_grad():
            mean = vae.encode(io["x"]).mode()
            decoded = vae.decode(io["posterior_mean"])
    finally:
        vae.disable_tiling()
    assert max_err(mean, io[f"{prefix}.posterior_mean"]) <= 1e-5
    reference_lossless = max_err(io[f"{prefix}.decoded_from_untiled_mean"], io["decoded_from_mean"]) <= TOLERANCE
    if reference_lossless:
        assert max_err(decoded, io[f"{prefix}.decoded_from_untiled_mean"]) <= TOLERANCE
    else:
        # reference bug: its chunk before the last one decodes without look-ahead. Ours stays exact.
        assert max_err(decoded, io["decoded_from_mean"]) <= TOLERANCE
        assert max_err(decoded, io[f"{prefix}.decoded_from_untiled_mean"]) > 1e-2


@pytest.mark.parametrize("frames", [1, 5, 9, 21])
@pytest.mark.parametrize("t_chunk_enc,t_chunk_dec", [(2, 1), (4, 2), (6, 3), (16, 4)])
def test_chunked_equals_unchunked(frames, t_chunk_enc, t_chunk_dec):
    vae = tiny_vae()
    x = torch.rand(1, 3, frames, 16, 24) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(x).mode()
        decoded = vae.decode(mean)
        vae.enable_tiling(True, t_chunk_enc=t_chunk_enc, t_chunk_dec=t_chunk_dec)
        assert max_err(vae.encode(x).mode(), mean) <= 1e-5
        assert max_err(vae.decode(mean), decoded) <= TOLERANCE
        # state never leaks between calls: a second chunked call gives the same result
        assert max_err(vae.decode(mean), decoded) <= TOLERANCE


def test_chunk_bounds():
    assert chunk_bounds(1, 4) == [(0, 1)]
    assert chunk_bounds(6, 4) == [(0, 1), (1, 5), (5, 6)]
    assert chunk_bounds(9, 4) == [(0, 1), (1, 5), (5, 9)]


def test_shapes_and_first_frame_is_causal():
    vae = tiny_vae()
    x = torch.rand(2, 3, 9, 16, 32) * 2 - 1
    with torch.no_grad():
        posterior = vae.encode(x)
        assert posterior.mode().shape == (2, 8, 3, 2, 4)
        assert vae.decode(posterior.mode()).shape == x.shape
        # frame 0 is encoded on its own: later frames never change latent frame 0
        changed = x.clone()
        changed[:, :, 1:] = torch.rand_like(changed[:, :, 1:])
        torch.testing.assert_close(vae.encode(changed).mode()[:, :, 0], posterior.mode()[:, :, 0])
        image = vae.encode(x[:, :, :1]).mode()
        torch.testing.assert_close(image, posterior.mode()[:, :, :1], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "shape,message",
    [
        ((1, 3, 8, 16, 16), "8 frames is not 4k\\+1 \\(nearest: 5 or 9\\)"),
        ((1, 3, 9, 20, 16), "height 20 is not a multiple of 8 \\(nearest: 16 or 24\\)"),
        ((1, 3, 9, 16, 4), "width 4 is not a multiple of 8 \\(nearest: 8\\)"),
        ((1, 4, 9, 16, 16), "video must be \\(B, 3, T, H, W\\)"),
    ],
)
def test_invalid_video_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_vae().encode(torch.zeros(shape))


def test_invalid_latent_and_chunk_settings():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="latent must be"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))
    with pytest.raises(ValueError, match="even"):
        vae.enable_tiling(t_chunk_enc=3)
    with pytest.raises(ValueError, match="base_channels"):
        WFVAE(base_channels=8, decoder_energy_flow_hidden_size=16, norm_type="layernorm")


def test_latent_normalisation_per_channel():
    scale = [0.5 + i / 10 for i in range(8)]
    shift = [i / 3 - 1 for i in range(8)]
    vae = tiny_vae(scale=scale, shift=shift)
    z = torch.randn(2, 8, 3, 4, 4)
    normed = vae.normalize_latents(z)
    torch.testing.assert_close(normed[:, 3], (z[:, 3] - shift[3]) * scale[3])
    torch.testing.assert_close(vae.denormalize_latents(normed), z)


def test_posterior_sample_follows_generator():
    vae = tiny_vae()
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        posterior = vae.encode(x)
        a = posterior.sample(generator=torch.Generator().manual_seed(3))
        b = posterior.sample(generator=torch.Generator().manual_seed(3))
        c = posterior.sample(generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_on_cpu(dtype):
    vae = tiny_vae()
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        reference = vae(x)[0]
        low = vae.to(dtype)(x.to(dtype))[0]
    assert low.dtype == dtype
    assert (low.float() - reference).norm() / reference.norm() < 0.05


def test_release_architecture_size():
    with torch.device("meta"):
        vae = WFVAE(**RELEASE_CONFIG)
    assert len(vae.state_dict()) == 228
    assert sum(p.numel() for p in vae.parameters()) == 146_662_668
    assert sum(p.numel() for p in vae.encoder.parameters()) == 38_268_240
    frozen = [n for n, p in vae.named_parameters() if not p.requires_grad]
    assert len(frozen) == 8 and all("wavelet_tranform_l2" in n for n in frozen)


# --------------------------------------------------------------------------------------------------
# spatial tiling

from soraplan.models.vae.tiling import blend_spatial_tiles, tile_starts  # noqa: E402


@pytest.mark.parametrize("size,tile,overlap,align", [(100, 32, 8, 8), (64, 32, 16, 8), (33, 16, 4, 1), (16, 32, 8, 8)])
def test_tiles_cover_the_frame(size, tile, overlap, align):
    starts = tile_starts(size, tile, overlap, align)
    assert starts[0] == 0 and all(s % align == 0 for s in starts)
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all()


@pytest.mark.parametrize("scale", [(1, 8), (8, 1), (1, 1)])
def test_blending_is_exact_for_local_functions(scale):
    num, den = scale
    x = torch.randn(2, 3, 4, 96, 136)

    def local(t):  # pointwise map + resampling: commutes with cropping
        t = torch.tanh(t) * 2 + 1
        if den > 1:
            return t[..., ::den, ::den]
        return t.repeat_interleave(num, -2).repeat_interleave(num, -1)

    tiled = blend_spatial_tiles(x, local, tile=32, overlap=16, scale=scale, align=8)
    torch.testing.assert_close(tiled, local(x))


def test_vae_spatial_tiling_shapes_and_convergence():
    vae = tiny_vae()
    x = torch.rand(1, 3, 5, 64, 96) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(x).mode()
        decoded = vae.decode(mean)
        errors = []
        for tile, overlap in [(32, 16), (48, 16), (64, 32)]:
            vae.enable_spatial_tiling(tile, overlap)
            tiled_mean = vae.encode(x).mode()
            tiled_video = vae.decode(mean)
            assert tiled_mean.shape == mean.shape and tiled_video.shape == decoded.shape
            errors.append(((tiled_video - decoded).norm() / decoded.norm()).item())
        assert errors[0] > errors[1] > errors[2]  # larger tiles, smaller seam error
        vae.enable_spatial_tiling(96, 32)  # one tile covers the frame: exact
        assert max_err(vae.decode(mean), decoded) == 0.0
        vae.enable_tiling(True, t_chunk_enc=2, t_chunk_dec=1)  # temporal chunks inside spatial tiles
        vae.enable_spatial_tiling(64, 32)
        assert vae.decode(mean).shape == decoded.shape
    with pytest.raises(ValueError, match="multiple of 8"):
        vae.enable_spatial_tiling(60, 16)

"""Size presets of the v1.3 transformer, and factories that build them.

``"2B/122"`` is the released model (32 layers, 24 heads × 96, patch 1×2×2, mT5-XXL captions, Skiparse
k = 4). ``"tiny"`` is a 6-layer model small enough for CPU tests that still has every kind of layer:
dense (0, 1, 4, 5), single-skip (2) and group-skip (3).
"""

from __future__ import annotations

from .transformer import OpenSoraInpaint, OpenSoraT2V

TRANSFORMER_SIZES: dict[str, dict] = {
    "2B/122": dict(
        num_layers=32,
        num_attention_heads=24,
        attention_head_dim=96,
        patch_size=2,
        patch_size_t=1,
        in_channels=8,
        out_channels=8,
        caption_channels=4096,
        cross_attention_dim=2304,
        activation_fn="gelu-approximate",
        attention_bias=True,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        sparse1d=True,
        sparse_n=4,
    ),
    "tiny": dict(
        num_layers=6,
        num_attention_heads=2,
        attention_head_dim=12,
        patch_size=2,
        patch_size_t=1,
        in_channels=8,
        out_channels=8,
        caption_channels=32,
        cross_attention_dim=24,
        activation_fn="gelu-approximate",
        attention_bias=True,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        sparse1d=True,
        sparse_n=4,
    ),
}


def _size_config(size: str, overrides: dict) -> dict:
    if size not in TRANSFORMER_SIZES:
        raise ValueError(f"unknown transformer size {size!r}; choose one of {', '.join(TRANSFORMER_SIZES)}")
    return {**TRANSFORMER_SIZES[size], **overrides}


def build_t2v(size: str = "2B/122", **overrides) -> OpenSoraT2V:
    """A randomly initialised T2V transformer of a preset size (config fields may be overridden)."""
    return OpenSoraT2V(**_size_config(size, overrides))


def build_inpaint(size: str = "2B/122", **overrides) -> OpenSoraInpaint:
    """A randomly initialised inpaint / I2V transformer of a preset size (``vae_scale_factor_t`` 4)."""
    return OpenSoraInpaint(**{"vae_scale_factor_t": 4, **_size_config(size, overrides)})


def opensora_t2v_2b_122(**overrides) -> OpenSoraT2V:
    """The released T2V architecture (2,771,981,600 parameters)."""
    return build_t2v("2B/122", **overrides)


def opensora_inpaint_2b_122(**overrides) -> OpenSoraInpaint:
    """The released I2V architecture (2,782,713,632 parameters)."""
    return build_inpaint("2B/122", **overrides)

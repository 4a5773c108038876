"""Fixtures shared by the trainer tests."""

from __future__ import annotations

import json

import pytest

from ..conftest import make_videos

TINY_VAE = {"latent_dim": 8, "base_channels": 8, "encoder_energy_flow_hidden_size": 8,
            "decoder_energy_flow_hidden_size": 8, "norm_type": "layernorm", "t_interpolation": "trilinear"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """train/ (8 clips) and eval/ (2 clips) of real mp4 files, and a tiny WF-VAE config."""
    root = tmp_path_factory.mktemp("videos")
    make_videos(root / "train", 8, frames=12, size=32, seed=0)
    make_videos(root / "eval", 2, frames=12, size=32, seed=1)
    config = root / "tiny_vae.json"
    config.write_text(json.dumps(TINY_VAE))
    return root

"""LPIPS from a local weights file: a real distance, and usable by the VAE trainer."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from soraplan.training.lpips import LPIPS

from .test_train_vae import train_vae


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory):
    torch.manual_seed(0)
    model = LPIPS()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("lin"):
                param.abs_()  # LPIPS heads are non-negative
    path = tmp_path_factory.mktemp("lpips") / "lpips_vgg.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_distance_properties(lpips_file):
    lpips = LPIPS.from_file(lpips_file).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(lpips(x, x), torch.zeros(2))
        d_xy, d_yx = lpips(x, y), lpips(y, x)
    assert (d_xy > 0).all()
    torch.testing.assert_close(d_xy, d_yx)


def test_incomplete_weights_file(tmp_path, lpips_file):
    path = tmp_path / "partial.safetensors"
    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(path))
    with pytest.raises(ValueError, match="lacks"):
        LPIPS.from_file(path)
    with pytest.raises(FileNotFoundError):
        LPIPS.from_file(tmp_path / "missing.safetensors")


def test_trainer_uses_lpips(videos, lpips_file, tmp_path):
    out = tmp_path / "run"
    result = train_vae("--video_path", videos / "train", "--ckpt_dir", out, "--model_config", videos / "tiny_vae.json",
                       "--num_frames", 9, "--resolution", 32, "--batch_size", 2, "--max_steps", 2, "--log_steps", 1,
                       "--lpips_weights", lpips_file, "--perceptual_weight", 0.5)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["perceptual_loss"] > 0 for r in records if "rec_loss" in r)

"""Real mp4 files in and out with PyAV; clip extraction for training; corrupt files are skipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soraplan.data import VideoReadError, read_video, write_video
from soraplan.data.clips import VideoClipDataset, resize_center_crop

from ..conftest import make_videos


def test_write_then_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (5, 1, 1, 3), dtype=np.uint8), 32, axis=1).repeat(48, axis=2)
    path = tmp_path / "flat.mp4"
    write_video(path, frames, fps=12)
    decoded, fps = read_video(path)
    assert decoded.shape == (5, 32, 48, 3) and fps == pytest.approx(12)
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 4  # flat colours survive H.264
    assert [p.name for p in tmp_path.iterdir()] == ["flat.mp4"]


def test_bad_frames_and_files_raise(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError):
        read_video(broken)


def test_clip_dataset_shapes_and_skipping(tmp_path, caplog):
    make_videos(tmp_path, 3, frames=12, size=40)
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00" * 100)
    make_videos(tmp_path / "short", 1, frames=3, size=40)
    dataset = VideoClipDataset(tmp_path, num_frames=9, resolution=32)
    assert len(dataset) == 5
    clips = [dataset[i] for i in range(len(dataset))]
    assert all(c.shape == (3, 9, 32, 32) for c in clips)
    assert all(c.min() >= -1 and c.max() <= 1 for c in clips)
    assert len(dataset.skipped) == 2
    assert "skipping unreadable video" in caplog.text


def test_resize_center_crop_keeps_the_centre():
    video = torch.zeros(1, 3, 20, 40)
    video[..., 6:34] = 1.0  # a band wider than the centre crop
    out = resize_center_crop(video, 10)
    assert out.shape == (1, 3, 10, 10)
    assert out.mean() == pytest.approx(1.0, abs=1e-3)

"""Fixed-size training clips from a folder of videos (used by the VAE trainer).

A clip is ``num_frames`` frames taken every ``sample_rate`` frames from a random window, resized so the
short side is ``resolution`` and centre-cropped to a square, scaled to [-1, 1]. Files that cannot be
decoded, or are too short, are skipped and counted, never crash a run.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .video_io import VIDEO_EXTENSIONS, VideoReadError, read_video

logger = logging.getLogger(__name__)


def list_videos(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)


def resize_center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """(T, C, H, W) float -> (T, C, size, size): short side to ``size`` (bilinear, antialiased), centre crop."""
    height, width = video.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        video = F.interpolate(video, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return video[..., top:top + size, left:left + size]


class VideoClipDataset(Dataset):
    """Clips (3, num_frames, resolution, resolution) in [-1, 1] from every readable video of a folder."""

    def __init__(self, folder: str | Path, num_frames: int, resolution: int, sample_rate: int = 1,
                 random_window: bool = True):
        self.paths = list_videos(folder)
        if not self.paths:
            raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {folder}")
        self.num_frames = num_frames
        self.resolution = resolution
        self.sample_rate = sample_rate
        self.random_window = random_window
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path: Path) -> torch.Tensor:
        span = (self.num_frames - 1) * self.sample_rate + 1
        frames, _ = read_video(path)
        if len(frames) < span:
            raise VideoReadError(f"{path} has {len(frames)} frames, a clip needs {span}")
        start = random.randint(0, len(frames) - span) if self.random_window else 0
        clip = torch.from_numpy(frames[start:start + span:self.sample_rate])  # (T, H, W, 3) uint8
        clip = clip.permute(0, 3, 1, 2).float() / 255.0
        clip = resize_center_crop(clip, self.resolution)
        return (clip * 2 - 1).transpose(0, 1).contiguous()  # (3, T, S, S)

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            if path in self.skipped:
                continue
            try:
                return self._load(path)
            except VideoReadError as error:
                self.skipped.add(path)
                logger.warning("skipping unreadable video (%d skipped so far): %s", len(self.skipped), error)
        raise RuntimeError("no readable video left in the dataset")

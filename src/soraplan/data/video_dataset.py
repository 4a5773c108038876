"""Training samples as tensors, and a sampler that keeps every batch to one shape.

``VideoTextDataset`` reads a sample's frames (PyAV) or image (PIL), crops and resizes them as the
reference (area cap + stride crop, or ``force_resolution`` crop-resize) and draws a caption, applying
classifier-free-guidance dropout. A file that cannot be read is replaced by another sample of the
same bucket and counted, so a corrupt video never stops a run.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .captions import add_aesthetic_notice, clean_caption
from .annotations import Sample
from .transforms import center_crop, center_crop_resize, resize
from .video_io import VideoReadError, read_video

logger = logging.getLogger(__name__)

DEFAULT_VIDEO_TEXT = "The video showcases a scene with coherent and clear visuals."
DEFAULT_IMAGE_TEXT = "The image showcases a scene with coherent and clear visuals."


def read_frames(sample: Sample, with_anchor: bool = False):
    """uint8 (T, 3, H, W) of a sample's source frames, cropped and resized to its sample size; with
    ``with_anchor``, also (3, H, W) of the first frame of its stream (``Sample.first_source_frame``),
    cropped and resized alike (an image is its own anchor)."""
    indices = ([sample.first_source_frame] if with_anchor else []) + list(sample.frame_indices)
    if sample.is_video:
        frames, _ = read_video(sample.path, max_frames=max(indices) + 1)
        if len(frames) <= max(indices):
            raise VideoReadError(f"{sample.path} has {len(frames)} frames, frame {max(indices)} is needed")
        frames = frames[indices]
    else:
        from PIL import Image

        try:
            with Image.open(sample.path) as image:
                frames = np.array(image.convert("RGB"))[None]
        except OSError as error:
            raise VideoReadError(f"cannot read image {sample.path}: {error}") from None
        if with_anchor:
            frames = np.concatenate([frames, frames])
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W), the anchor first if asked for
    if sample.crop:
        x0, x1, y0, y1 = sample.crop
        video = video[..., y0:y1, x0:x1]
    if sample.resize_to is None:  # force_resolution: crop to the aspect ratio, resize
        video = center_crop_resize(video, sample.height, sample.width)
    else:  # area cap, then centre crop to the stride
        video = center_crop(resize(video, *sample.resize_to), sample.height, sample.width)
    video = video.contiguous()
    return (video[1:], video[0]) if with_anchor else video


def unreadable_samples(samples: list[Sample], rank: int = 0, world: int = 1) -> list[tuple[int, str]]:
    """(index, reason) of every sample of this rank's share (every ``world``-th, from ``rank``) whose
    frames cannot be read as the trainer reads them: decoding, frame count, crop and resize included.
    The trainer skips such samples (with a warning) at run time; ``soraplan data check --verify``
    finds them beforehand, its work spread over the processes of a launch."""
    found = []
    for index in range(rank, len(samples), world):
        try:
            read_frames(samples[index])
        except (VideoReadError, OSError, ValueError, RuntimeError) as error:
            found.append((index, str(error) or type(error).__name__))
    return found


class VideoTextDataset(Dataset):
    """Items ``{"video": (3, T, H, W) float in [-1, 1], "caption": str, "index": int}``; with ``anchors``
    also ``"anchor"``: (3, H, W), the first frame of the clip's video (see ``read_frames``)."""

    def __init__(self, samples: list[Sample], cfg: float = 0.1, default_text_ratio: float = 0.5, seed: int = 0,
                 clean_video_captions: bool = False, keep_chinese: bool = False, anchors: bool = False):
        self.samples = samples
        self.anchors = anchors
        self.clean_video_captions = clean_video_captions  # the reference cleans image captions only
        self.keep_chinese = keep_chinese
        self.cfg = cfg
        self.default_text_ratio = default_text_ratio
        self.seed = seed
        self.by_bucket: dict[tuple, list[int]] = defaultdict(list)
        for index, sample in enumerate(samples):
            self.by_bucket[sample.bucket].append(index)
        self.failed: set[int] = set()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Captions and dropout are drawn per (seed, epoch, index): reproducible, new every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def caption(self, sample: Sample, rng: random.Random) -> str:
        if rng.random() < self.cfg:  # classifier-free guidance: drop the caption
            if rng.random() < self.default_text_ratio:
                return DEFAULT_VIDEO_TEXT if sample.is_video else DEFAULT_IMAGE_TEXT
            return ""
        text = add_aesthetic_notice(rng.choice(sample.captions), sample.aesthetic, sample.is_video, rng)
        if not sample.is_video or self.clean_video_captions:
            text = clean_caption(text, self.keep_chinese)
        return text

    def __getitem__(self, index: int) -> dict:
        rng = random.Random(hash((self.seed, self.epoch, index)))
        candidates = [index] + rng.sample(self.by_bucket[self.samples[index].bucket],
                                          len(self.by_bucket[self.samples[index].bucket]))
        for candidate in candidates:
            if candidate in self.failed:
                continue
            sample = self.samples[candidate]
            try:
                frames = read_frames(sample, with_anchor=self.anchors)
            except VideoReadError as error:
                self.failed.add(candidate)
                logger.warning("skipping unreadable sample (%d so far): %s", len(self.failed), error)
                continue
            item = {"caption": self.caption(sample, rng), "index": candidate}
            if self.anchors:
                frames, anchor = frames
                item["anchor"] = anchor.float().div(255).mul(2).sub(1)  # (3, H, W)
            item["video"] = frames.float().div(255).mul(2).sub(1).transpose(0, 1)  # (3, T, H, W)
            return item
        raise RuntimeError(f"every sample of bucket {self.samples[index].bucket} is unreadable")


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of one bucket (one shape) for one rank of a data-parallel group.

    Each epoch: shuffle inside every bucket, cut it into global batches of ``batch_size x num_replicas``
    (a bucket's remainder is dropped), shuffle the global batches, and give rank r the r-th slice of
    each. ``start_batch`` skips batches already trained on when resuming mid-epoch.
    """

    def __init__(self, buckets: list[tuple], batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.buckets = buckets
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _global_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100003 + self.epoch)
        grouped: dict[tuple, list[int]] = defaultdict(list)
        for index, bucket in enumerate(self.buckets):
            grouped[bucket].append(index)
        size = self.batch_size * self.num_replicas
        batches = []
        for bucket in sorted(grouped):
            indices = grouped[bucket]
            rng.shuffle(indices)
            batches += [indices[i:i + size] for i in range(0, len(indices) - size + 1, size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        for batch in self._global_batches()[self.start_batch:]:
            yield batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, len(self._global_batches()) - self.start_batch)


def collate(items: list[dict]) -> dict:
    batch = {
        "video": torch.stack([item["video"] for item in items]),
        "caption": [item["caption"] for item in items],
        "index": torch.tensor([item["index"] for item in items]),
    }
    if "anchor" in items[0]:
        batch["anchor"] = torch.stack([item["anchor"] for item in items])  # (B, 3, H, W)
    return batch

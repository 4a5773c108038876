"""The training data format of Open-Sora Plan, and the reference's filters.

``data.txt``: one ``DATA_ROOT,ANNOTATION`` line per source. An annotation is a JSON or pickle list of
items ``{path, cap: str | [str], resolution: {height, width}, num_frames, fps, aesthetic?, cut?,
crop?}`` (images: no num_frames / fps), paths relative to DATA_ROOT.

:func:`select_samples` applies the filters (caption, resolution and aspect, clip length at
``train_fps``, 4k+1 frame rule) and gives every kept item its sample size and frame indices; the
bucket of a sample is its (frames, height, width), so a batch drawn from one bucket has one shape.
Every drop is counted by reason, so ``soraplan data check`` can say why.
"""

from __future__ import annotations

import json
import math
import pickle
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .transforms import max_area_size, stride_size
from .video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

HW_ASPECT_LIMIT = 2.0  # h/w within [1/2, 2]
TOO_LONG_FACTOR = 5.0  # a clip longer than 5x what a sample needs is dropped


@dataclass
class DataConfig:
    """The data flags of the reference's training scripts (same names and meanings)."""

    num_frames: int = 93
    max_height: int = 352
    max_width: int = 640
    force_resolution: bool = False
    max_hxw: int | None = None
    min_hxw: int | None = None
    hw_stride: int = 32
    train_fps: float = 18.0
    speed_factor: float = 1.0
    drop_short_ratio: float = 0.0
    min_num_frames: int = 29  # shortest clip kept (the reference's fixed 29), capped at num_frames
    ae_stride_t: int = 4
    sp_size: int = 1

    def __post_init__(self):
        if self.num_frames < 1 or (self.num_frames - 1) % self.ae_stride_t:
            raise ValueError(f"--num_frames {self.num_frames} is not 4k+1")
        if self.max_hxw is None:
            self.max_hxw = self.max_height * self.max_width
        if self.min_hxw is None:
            self.min_hxw = self.max_hxw // 4
        for name in ("max_height", "max_width", "hw_stride"):
            if getattr(self, name) <= 0 or getattr(self, name) % 16:
                raise ValueError(f"--{name} {getattr(self, name)} must be a positive multiple of 16 (VAE x transformer patch)")
        if not 0.0 <= self.drop_short_ratio <= 1.0:
            raise ValueError(f"--drop_short_ratio must lie in [0, 1], got {self.drop_short_ratio}")


@dataclass
class Sample:
    """One training item after filtering."""

    path: Path
    captions: list[str]
    is_video: bool
    frame_indices: list[int]  # source frames to read (images: [0])
    height: int  # sample size in pixels
    width: int
    resize_to: tuple[int, int] | None = None  # area-capped size before the stride crop; None: crop-resize
    crop: list[int] | None = None  # [x0, x1, y0, y1] applied after decoding
    aesthetic: float | None = None
    # the first frame of the stream the clip was cut from (the video's, or its cut's): an anchored long
    # video gives each segment that frame as an appearance reference (--continuation_anchor)
    anchor_index: int | None = None

    @property
    def first_source_frame(self) -> int:
        return self.frame_indices[0] if self.anchor_index is None else self.anchor_index

    @property
    def bucket(self) -> tuple[int, int, int]:
        return len(self.frame_indices), self.height, self.width


@dataclass
class Selection:
    samples: list[Sample] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    @property
    def buckets(self) -> Counter:
        return Counter(s.bucket for s in self.samples)


def read_data_file(data_txt: str | Path) -> list[tuple[Path, Path]]:
    """``data.txt`` -> [(root, annotation file)]."""
    data_txt = Path(data_txt)
    if not data_txt.is_file():
        raise FileNotFoundError(f"data file {data_txt} does not exist")
    sources = []
    for number, line in enumerate(data_txt.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
            raise ValueError(f"{data_txt}:{number}: expected 'DATA_ROOT,ANNOTATION_FILE', got {line!r}")
        root, annotation = Path(parts[0]), Path(parts[1])
        if not annotation.is_absolute():
            annotation = data_txt.parent / annotation
        if not root.is_absolute():
            root = data_txt.parent / root
        sources.append((root, annotation))
    if not sources:
        raise ValueError(f"data file {data_txt} lists no sources")
    return sources


def load_annotations(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    if path.suffix == ".json":
        with open(path) as f:
            items = json.load(f)
    elif path.suffix in (".pkl", ".pickle"):
        with open(path, "rb") as f:
            items = pickle.load(f)
    else:
        raise ValueError(f"annotation file {path} must be .json or .pkl")
    if not isinstance(items, list):
        raise ValueError(f"annotation file {path} must hold a list of items")
    return items


def longest_valid_length(length: int, config: DataConfig) -> int | None:
    """The longest y <= length with y = 4k+1 and a latent length divisible by sp_size, y >= the minimum."""
    minimum = min(config.min_num_frames, config.num_frames)
    for y in range(length, minimum - 1, -1):
        if (y - 1) % config.ae_stride_t == 0 and ((y - 1) // config.ae_stride_t + 1) % config.sp_size == 0:
            return y
    return None


def _sample_size(height: int, width: int, config: DataConfig) -> tuple[int, int] | str:
    """(sample height, width) or the reason to drop."""
    if config.force_resolution:
        target = config.max_height / config.max_width
        if not target / HW_ASPECT_LIMIT <= height / width <= target * HW_ASPECT_LIMIT:
            return "aspect ratio"
        return config.max_height, config.max_width
    sample_h, sample_w = stride_size(*max_area_size(height, width, config.max_hxw), config.hw_stride)
    if sample_h <= 0 or sample_w <= 0 or sample_h * sample_w < config.min_hxw:
        return "too small"
    if not 1 / HW_ASPECT_LIMIT <= height / width <= HW_ASPECT_LIMIT:
        return "aspect ratio"
    return sample_h, sample_w


def _frame_indices(item: dict, config: DataConfig, rng: random.Random) -> list[int] | str:
    """Source frames of a clip sampled at train_fps (random window), or the reason to drop."""
    num_frames = item.get("num_frames")
    if not isinstance(num_frames, int) or num_frames <= 0:
        return "no num_frames"
    fps = float(item.get("fps") or 24.0)
    needed = config.num_frames * fps / config.train_fps * config.speed_factor
    if num_frames > TOO_LONG_FACTOR * needed:
        return "too long"
    interval = 1.0 if abs(fps - config.train_fps) < 0.1 else fps / config.train_fps
    start = int((item.get("cut") or [0])[0])
    indices = [int(start + i * interval) for i in range(math.ceil(num_frames / interval))]
    if config.speed_factor > 1 and len(indices) > config.num_frames:
        keep = int(len(indices) / min(config.speed_factor, len(indices) / config.num_frames))
        indices = [indices[round(k * (len(indices) - 1) / max(keep - 1, 1))] for k in range(keep)]
    if len(indices) < config.num_frames and rng.random() < config.drop_short_ratio:
        return "too short"
    if len(indices) > config.num_frames:
        begin = rng.randint(0, max(0, len(indices) - config.num_frames - 1))
        indices = indices[begin:begin + config.num_frames]
    length = longest_valid_length(len(indices), config)
    if length is None:
        return "too short"
    return indices[:length]


def select_samples(sources: list[tuple[Path, list[dict]]], config: DataConfig, seed: int = 42) -> Selection:
    """Filter annotation items into training samples (deterministic for a seed, so all ranks agree)."""
    rng = random.Random(seed)
    selection = Selection()
    for root, items in sources:
        for item in items:
            reason = _select(root, item, config, rng, selection)
            if reason:
                selection.dropped[reason] += 1
    return selection


def _select(root: Path, item: dict, config: DataConfig, rng: random.Random, selection: Selection) -> str | None:
    if not isinstance(item, dict) or "path" not in item:
        return "no path"
    captions = item.get("cap")
    captions = [captions] if isinstance(captions, str) else captions
    if not captions or not all(isinstance(c, str) for c in captions):
        return "no caption"
    resolution = item.get("resolution") or {}
    height, width = resolution.get("height"), resolution.get("width")
    if not isinstance(height, int) or not isinstance(width, int) or height <= 0 or width <= 0:
        return "no resolution"
    suffix = Path(item["path"]).suffix.lower()
    if suffix not in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
        return "unknown file type"
    size = _sample_size(height, width, config)
    if isinstance(size, str):
        return size
    is_video = suffix in VIDEO_EXTENSIONS
    indices = _frame_indices(item, config, rng) if is_video else [0]
    if isinstance(indices, str):
        return indices
    resize_to = None if config.force_resolution else max_area_size(height, width, config.max_hxw)
    selection.samples.append(Sample(
        path=root / item["path"], captions=list(captions), is_video=is_video, frame_indices=indices,
        height=size[0], width=size[1], resize_to=resize_to, crop=item.get("crop"),
        aesthetic=item.get("aesthetic", item.get("aes")),
        anchor_index=int((item.get("cut") or [0])[0]) if is_video else None,
    ))
    return None


def drop_small_buckets(selection: Selection, min_size: int) -> Selection:
    """Remove buckets with fewer than ``min_size`` samples (the reference: 4 x the global batch)."""
    counts = selection.buckets
    kept = [s for s in selection.samples if counts[s.bucket] >= min_size]
    dropped = Counter(selection.dropped)
    if len(kept) < len(selection.samples):
        dropped["small bucket"] += len(selection.samples) - len(kept)
    return Selection(kept, dropped)


def load_training_samples(data_txt: str | Path, config: DataConfig, min_bucket_size: int = 1, seed: int = 42) -> Selection:
    sources = [(root, load_annotations(annotation)) for root, annotation in read_data_file(data_txt)]
    return drop_small_buckets(select_samples(sources, config, seed), min_bucket_size)

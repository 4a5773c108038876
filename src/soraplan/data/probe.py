"""Build annotation files from a folder: probe every video (resolution, frames, fps) and image."""

from __future__ import annotations

import logging
from pathlib import Path

import av

from .video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)


def probe_video(path: Path) -> dict:
    """{resolution, num_frames, fps}; counts frames by decoding when the container does not say."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        height, width = stream.codec_context.height, stream.codec_context.width
        frames = stream.frames or sum(1 for _ in container.decode(stream))
    return {"resolution": {"height": height, "width": width}, "num_frames": int(frames), "fps": round(fps, 3)}


def probe_image(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return {"resolution": {"height": height, "width": width}}


def annotate_folder(folder: str | Path) -> tuple[list[dict], list[str]]:
    """Annotation items for every video/image under ``folder`` (paths relative to it); the caption of
    ``clip.mp4`` is ``clip.txt`` beside it (one caption per non-empty line). Returns (items, problems)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    items, problems = [], []
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if suffix not in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS or not path.is_file():
            continue
        caption_file = path.with_suffix(".txt")
        captions = [line.strip() for line in caption_file.read_text().splitlines() if line.strip()] if caption_file.is_file() else []
        if not captions:
            problems.append(f"{path.relative_to(folder)}: no caption file {caption_file.name}")
            continue
        try:
            info = probe_video(path) if suffix in VIDEO_EXTENSIONS else probe_image(path)
        except (av.error.FFmpegError, OSError, IndexError) as error:
            problems.append(f"{path.relative_to(folder)}: unreadable ({error})")
            continue
        items.append({"path": str(path.relative_to(folder)), "cap": captions, **info})
    return items, problems

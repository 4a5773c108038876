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


def media_files(folder: str | Path) -> list[Path]:
    """Every video and image under ``folder``, in one order every process agrees on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    return [path for path in sorted(folder.rglob("*"))
            if path.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS and path.is_file()]


def annotate_file(folder: Path, path: Path) -> tuple[dict | None, str | None]:
    """(annotation item, None) for one file, or (None, why it is skipped). The caption of ``clip.mp4``
    is ``clip.txt`` beside it (one caption per non-empty line)."""
    caption_file = path.with_suffix(".txt")
    captions = [line.strip() for line in caption_file.read_text().splitlines() if line.strip()] \
        if caption_file.is_file() else []
    if not captions:
        return None, f"{path.relative_to(folder)}: no caption file {caption_file.name}"
    try:
        info = probe_video(path) if path.suffix.lower() in VIDEO_EXTENSIONS else probe_image(path)
    except (av.error.FFmpegError, OSError, IndexError) as error:
        return None, f"{path.relative_to(folder)}: unreadable ({error})"
    return {"path": str(path.relative_to(folder)), "cap": captions, **info}, None


def annotate_share(folder: str | Path, rank: int = 0, world: int = 1) -> list[tuple[int, dict | None, str | None]]:
    """This rank's share of a folder's files (every ``world``-th, from ``rank``), each as (its place in
    the whole list, item, problem): the shares of all ranks merge back into one process's output."""
    folder = Path(folder)
    files = media_files(folder)
    return [(place, *annotate_file(folder, files[place])) for place in range(rank, len(files), world)]


def merge_shares(shares: list[list[tuple[int, dict | None, str | None]]]) -> tuple[list[dict], list[str]]:
    """(items, problems) in file order, from every rank's share."""
    merged = sorted((entry for share in shares for entry in share), key=lambda entry: entry[0])
    return [item for _, item, _ in merged if item is not None], [problem for _, _, problem in merged if problem]


def annotate_folder(folder: str | Path) -> tuple[list[dict], list[str]]:
    """Annotation items for every video/image under ``folder`` (paths relative to it), in one process.
    Returns (items, problems)."""
    return merge_shares([annotate_share(folder)])

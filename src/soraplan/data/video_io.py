"""Reading and writing real video files with PyAV (FFmpeg)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv", ".wmv", ".mpeg", ".mpg", ".3gp")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tiff", ".webp")


class VideoReadError(ValueError):
    """A file that cannot be decoded as video."""


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode the frames of ``path`` as (T, H, W, 3) uint8 RGB and return them with the stream's fps."""
    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError, OSError) as error:
        raise VideoReadError(f"cannot decode {path}: {error}") from error
    if not frames:
        raise VideoReadError(f"{path} has no video frames")
    return np.stack(frames), fps


def write_video(path: str | Path, frames: np.ndarray, fps: float = 16.0, crf: int = 18,
                comment: str | None = None) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 mp4; written to a temporary name, then renamed.

    ``crf`` is x264's quality (lower is better; 0 is lossless, so the decoded frames are exactly the
    YUV 4:2:0 version of the input even though x264's byte stream is not bit-reproducible).
    ``comment`` goes into the container's metadata (the mp4 ``comment`` tag; players and ffprobe show it).
    """
    frames = np.ascontiguousarray(frames)  # PyAV reads the raw buffer: strided views would be garbled
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")
    try:
        with av.open(str(partial), mode="w") as container:
            if comment is not None:
                container.metadata["comment"] = comment
            stream = container.add_stream("libx264", rate=_rate(fps))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)

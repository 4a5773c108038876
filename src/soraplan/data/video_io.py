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
    with VideoWriter(path, fps, crf, comment) as writer:
        writer.write(frames)


class VideoWriter:
    """An H.264 mp4 written a run of frames at a time (a long video never whole in memory): frames go
    to a temporary name that becomes ``path`` when the ``with`` block ends without an error (and is
    removed when it ends with one), so a reader never sees half a file.

        with VideoWriter("long.mp4", fps=24) as writer:
            for frames in segments:  # (T, H, W, 3) uint8 each, all of one size
                writer.write(frames)
    """

    def __init__(self, path: str | Path, fps: float = 16.0, crf: int = 18, comment: str | None = None):
        self.path = Path(path)
        self.fps, self.crf, self.comment = fps, crf, comment
        self.partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial{self.path.suffix}")
        self.frames_written = 0
        self._container = self._stream = None

    def __enter__(self) -> "VideoWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames)  # PyAV reads the raw buffer: strided views would be garbled
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        height, width = frames.shape[1:3]
        if self._stream is None:
            if height % 2 or width % 2:
                raise ValueError(f"H.264 needs even frame sizes, got {height}x{width}")
            self._container = av.open(str(self.partial), mode="w")
            if self.comment is not None:
                self._container.metadata["comment"] = self.comment
            self._stream = self._container.add_stream("libx264", rate=_rate(self.fps))
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf)}
        elif (height, width) != (self._stream.height, self._stream.width):
            raise ValueError(f"frames of {height}x{width} in a {self._stream.height}x{self._stream.width} video")
        for frame in frames:
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.frames_written += len(frames)

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if self._container is not None:
                if kind is None:
                    self._container.mux(self._stream.encode())
                self._container.close()
            if kind is None:
                if not self.frames_written:
                    raise ValueError(f"{self.path}: no frames were written")
                os.replace(self.partial, self.path)
        finally:
            self.partial.unlink(missing_ok=True)


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)

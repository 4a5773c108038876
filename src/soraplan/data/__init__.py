"""Data: video decoding/encoding and datasets for training."""

from .video_io import VideoReadError, read_video, write_video

__all__ = ["VideoReadError", "read_video", "write_video"]

"""Does a model generate what the synthetic world shows? Metrics of ``soraplan eval``.

For held-out clips of the world (scene facts in the annotation), the pipeline is asked for

* i2v: the clip's first frame and its caption -> PSNR of generated frame 0 against the given frame, and
  whether the shape moves in the captioned direction;
* transition: first and last frame -> PSNR of the generated last frame (and first);
* continuation: the first ``continuation_frames`` frames -> PSNR of those frames in the output.

Motion is measured by tracking the shape: the centroid per frame of the pixels near the scene's colour
(weighted by closeness, up to ``COLOUR_TOLERANCE`` in RGB distance). Direction: the dominant axis and sign of the centroid's
displacement from the first to the last frame, "still" when it moved less than ``STILL_PIXELS``.
Smoothness ("jitter"): mean absolute second difference of the centroid path in pixels (0 for the
world's constant-speed motion; high when the shape jumps or flickers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .world import COLOURS, scene_from_annotation

COLOUR_TOLERANCE = 80.0
MIN_TRACKED_PIXELS = 6
STILL_PIXELS = 3.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images or videos of the same shape (capped at 99 for equal inputs)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else min(99.0, 10 * math.log10(255.0**2 / mse))


def track(video: np.ndarray, colour: tuple[int, int, int]) -> list[tuple[float, float] | None]:
    """Centroid (x, y) of the pixels of ``colour`` in each frame of (T, H, W, 3) uint8; None if absent.

    Pixels are weighted by closeness to the colour (1 at the colour, 0 at ``COLOUR_TOLERANCE``), so
    anti-aliased edges give a sub-pixel centroid rather than one that jumps a pixel at a time."""
    distance = np.linalg.norm(video.astype(np.float32) - np.asarray(colour, np.float32), axis=-1)  # (T, H, W)
    weight = np.clip(1.0 - distance / COLOUR_TOLERANCE, 0.0, 1.0)
    ys, xs = np.mgrid[: video.shape[1], : video.shape[2]]
    path = []
    for w in weight:
        total = w.sum()
        found = np.count_nonzero(w > 0.5) >= MIN_TRACKED_PIXELS
        path.append((float((w * xs).sum() / total), float((w * ys).sum() / total)) if found else None)
    return path


def direction_of(path: list) -> str | None:
    """right/left/up/down/still from a centroid path; None when the shape is lost at either end."""
    if path[0] is None or path[-1] is None:
        return None
    dx, dy = path[-1][0] - path[0][0], path[-1][1] - path[0][1]
    if max(abs(dx), abs(dy)) < STILL_PIXELS:
        return "still"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def jitter(path: list) -> float | None:
    """Mean |second difference| of the tracked centroid (pixels); None with fewer than 3 tracked frames."""
    points = np.array([p for p in path if p is not None], dtype=np.float64)
    if len(points) < 3:
        return None
    return float(np.abs(points[2:] - 2 * points[1:-1] + points[:-2]).sum(axis=1).mean())


@dataclass
class EvalResult:
    rows: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        def mean(key, task):
            values = [r[key] for r in self.rows if r["task"] == task and r.get(key) is not None]
            return float(np.mean(values)) if values else None

        i2v = [r for r in self.rows if r["task"] == "i2v"]
        return {
            "i2v_first_frame_psnr": mean("first_psnr", "i2v"),
            "i2v_direction_accuracy": (sum(r["direction_ok"] for r in i2v) / len(i2v)) if i2v else None,
            "i2v_jitter_px": mean("jitter", "i2v"),
            "transition_first_frame_psnr": mean("first_psnr", "transition"),
            "transition_last_frame_psnr": mean("last_psnr", "transition"),
            "transition_jitter_px": mean("jitter", "transition"),
            "continuation_given_frames_psnr": mean("given_psnr", "continuation"),
            "continuation_jitter_px": mean("jitter", "continuation"),
            "clips": len({r["clip"] for r in self.rows}),
        }


def load_world(data_txt: str | Path) -> list[tuple[Path, dict]]:
    """(video path, annotation item) of every clip of a synthetic world's data.txt."""
    from ..data.annotations import load_annotations, read_data_file

    items = []
    for root, annotation in read_data_file(data_txt):
        for item in load_annotations(annotation):
            if "scene" not in item:
                raise ValueError(f"{annotation} is not a synthetic world (items lack 'scene'); "
                                 "make one with soraplan data synth")
            items.append((root / item["path"], item))
    return items


def evaluate(pipe, data_txt: str | Path, clips: int = 32, num_inference_steps: int = 100,
             guidance_scale: float = 7.5, seed: int = 0, continuation_frames: int = 5,
             tasks: tuple[str, ...] = ("i2v", "transition", "continuation"), progress=None) -> EvalResult:
    from ..data.video_io import read_video

    result = EvalResult()
    world = load_world(data_txt)[:clips]
    for index, (path, item) in enumerate(world):
        scene = scene_from_annotation(item)
        given, _ = read_video(path)  # (T, H, W, 3) uint8
        frames, height, width = given.shape[:3]
        caption = item["cap"][0]
        colour = COLOURS[scene.colour]
        for task in tasks:
            conditions = {"i2v": [given[0]], "transition": [given[0], given[-1]],
                          "continuation": [given[:continuation_frames]]}[task]
            video = pipe(caption, conditions=conditions, num_frames=frames, height=height, width=width,
                         num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                         generator=torch.Generator().manual_seed(seed + index)).videos[0]
            path_xy = track(video, colour)
            row = {"clip": item["path"], "task": task, "caption": caption, "direction": scene.direction,
                   "first_psnr": psnr(video[0], given[0]), "jitter": jitter(path_xy)}
            if task == "i2v":
                row["generated_direction"] = direction_of(path_xy)
                row["direction_ok"] = row["generated_direction"] == scene.direction
            elif task == "transition":
                row["last_psnr"] = psnr(video[-1], given[-1])
            else:
                row["given_psnr"] = psnr(video[:continuation_frames], given[:continuation_frames])
            result.rows.append(row)
        if progress is not None:
            progress(index + 1, len(world))
    return result


"""Does a model generate what the synthetic world shows? Metrics of ``soraplan eval``.

For held-out clips of the world (scene facts in the annotation), the pipeline is asked for

* i2v: the clip's first frame and its caption;
* transition: its first and last frames;
* continuation: its first ``continuation_frames`` frames;

and every video is measured the way a viewer judges it:

* PSNR of the given frames in the output (first frame; the last for a transition; all given frames
  of a continuation);
* direction: does the shape move the captioned way? The shape is tracked by its colour in the given
  first frame: per frame, the centroid of the pixels near that colour (weighted by closeness, up to
  ``COLOUR_TOLERANCE`` in RGB distance); the direction is the dominant axis and sign of the
  centroid's displacement from the first to the last frame, "still" under ``STILL_PIXELS``, and a
  shape lost at either end is a miss. In a world with diagonal motions the direction is the nearest of
  the eight compass directions instead (a 45-degree sector each, not a 90-degree one), since there
  "moves to the right" and "moves up and to the right" are different answers;
* shape, colour and size kept (soraplan.demo.appearance): the shape of the probe frame (the last
  frame; the middle one for a transition, whose last frame is given) against the given first frame's,
  and whether every generated frame keeps shape and colour ("whole clip");
* jitter: mean absolute second difference of the centroid path in pixels (0 for the world's
  constant-speed motion; high when the shape jumps or flickers).

The same direction and appearance measurements on the VAE's reconstruction of the real clip are the
bound (``vae_`` keys): a model whose every video is decoded by that VAE cannot do better on average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .appearance import Shape, compare, segment_shape
from .world import DIAGONAL_DIRECTIONS, scene_from_annotation

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


# the eight compass directions counter-clockwise from "right", 45 degrees apart (y grows downwards)
COMPASS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")


def direction_of(path: list, diagonals: bool = False) -> str | None:
    """right/left/up/down/still from a centroid path (with ``diagonals``, also up-right, up-left,
    down-right, down-left); None when the shape is lost at either end."""
    if path[0] is None or path[-1] is None:
        return None
    dx, dy = path[-1][0] - path[0][0], path[-1][1] - path[0][1]
    if max(abs(dx), abs(dy)) < STILL_PIXELS:
        return "still"
    if diagonals:
        sector = round(math.degrees(math.atan2(-dy, dx)) / 45.0) % 8
        return COMPASS[sector]
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def jitter(path: list) -> float | None:
    """Mean |second difference| of the tracked centroid (pixels); None with fewer than 3 tracked frames."""
    points = np.array([p for p in path if p is not None], dtype=np.float64)
    if len(points) < 3:
        return None
    return float(np.abs(points[2:] - 2 * points[1:-1] + points[:-2]).sum(axis=1).mean())


TASKS = ("i2v", "transition", "continuation")


def probe_frame(task: str, frames: int) -> int:
    """The frame whose shape is compared with the first frame's: the last one, except for a transition,
    whose last frame is given; there the middle frame, the one farthest from both given frames."""
    return frames // 2 if task == "transition" else frames - 1


def appearance_row(video: np.ndarray, reference: Shape, task: str, direction: str | None,
                   diagonals: bool = False) -> dict:
    """Direction, shape/colour/size kept at the probe frame, and over every frame, of one video."""
    path = track(video, reference.colour)
    probe = compare(reference, video[probe_frame(task, len(video))])
    every = [compare(reference, frame) for frame in video[1:]]
    moved = direction_of(path, diagonals)
    return {"generated_direction": moved, "direction_ok": moved == direction, "jitter": jitter(path),
            **probe.as_dict(), "shape_and_colour_kept": probe.shape_kept and probe.colour_kept,
            "whole_clip_kept": all(k.shape_kept and k.colour_kept for k in every),
            "min_iou": min(k.iou for k in every)}


# fractions of clips; their keys end in "_rate" and are printed as percentages
RATE_KEYS = ("direction_ok", "shape_kept", "colour_kept", "size_kept", "shape_and_colour_kept", "whole_clip_kept")


@dataclass
class EvalResult:
    rows: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """Per task: means of the PSNRs and jitter, the fraction of clips that keep each property, and
        the same fractions for the VAE's reconstruction of the real clip (``vae_...``: the bound)."""
        out = {}
        for task in TASKS:
            rows = [r for r in self.rows if r["task"] == task]
            if not rows:
                continue
            for key in ("first_psnr", "last_psnr", "given_psnr", "jitter"):
                values = [r[key] for r in rows if r.get(key) is not None]
                if values:
                    out[f"{task}_{key}"] = float(np.mean(values))
            for prefix in ("", "vae_"):
                for key in RATE_KEYS:
                    values = [r[prefix + key] for r in rows if prefix + key in r]
                    if values:
                        out[f"{prefix}{task}_{key.removesuffix('_ok')}_rate"] = sum(values) / len(values)
        out["clips"] = len({r["clip"] for r in self.rows})
        return out


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


def vae_reconstruction(vae, video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the same through the VAE (posterior mean, decoded): what the model could
    at best give back of the real clip, since everything it makes is decoded by this VAE."""
    x = torch.from_numpy(video).permute(3, 0, 1, 2)[None].to(vae.dtype) / 127.5 - 1  # (1, 3, T, H, W)
    with torch.no_grad():
        decoded = vae.decode(vae.encode(x).mode())[:, :, : video.shape[0]].float()
    return ((decoded[0] / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def evaluate(pipe, data_txt: str | Path, clips: int = 64, num_inference_steps: int | None = None,
             guidance_scale: float | None = None, seed: int = 0, continuation_frames: int = 5,
             tasks: tuple[str, ...] = TASKS, progress=None) -> EvalResult:
    from ..data.video_io import read_video

    result = EvalResult()
    world = load_world(data_txt)[:clips]
    # directions are told apart among eight when the world has diagonal motion, else among four
    diagonals = any(item["scene"]["direction"] in DIAGONAL_DIRECTIONS for _, item in world)
    for index, (path, item) in enumerate(world):
        scene = scene_from_annotation(item)
        given, _ = read_video(path)  # (T, H, W, 3) uint8
        frames, height, width = given.shape[:3]
        caption = item["cap"][0]
        reference = segment_shape(given[0])
        if reference is None:
            raise ValueError(f"no shape stands out of the background in the first frame of {path}")
        bound = vae_reconstruction(pipe.vae, given)
        for task in tasks:
            conditions = {"i2v": [given[0]], "transition": [given[0], given[-1]],
                          "continuation": [given[:continuation_frames]]}[task]
            video = pipe(caption, conditions=conditions, num_frames=frames, height=height, width=width,
                         num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                         generator=torch.Generator().manual_seed(seed + index)).videos[0]
            row = {"clip": item["path"], "task": task, "caption": caption, "direction": scene.direction,
                   "first_psnr": psnr(video[0], given[0]),
                   **appearance_row(video, reference, task, scene.direction, diagonals),
                   **{f"vae_{k}": v for k, v in appearance_row(bound, reference, task, scene.direction,
                                                               diagonals).items()}}
            if task == "transition":
                row["last_psnr"] = psnr(video[-1], given[-1])
            elif task == "continuation":
                row["given_psnr"] = psnr(video[:continuation_frames], given[:continuation_frames])
            result.rows.append(row)
        if progress is not None:
            progress(index + 1, len(world))
    return result

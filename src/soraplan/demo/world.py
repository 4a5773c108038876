"""A synthetic video world: coloured shapes moving over plain or gradient backgrounds.

Every clip shows one shape (circle, square, triangle) of a named colour that moves left, right, up or
down at constant speed, or stays still, with a caption such as "a red circle moves to the right on a
gray background". Clips are deterministic from (seed, index), so a dataset can be regenerated exactly,
and the annotation keeps the scene facts (shape, colour, direction, positions) for evaluation.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (235, 215, 40),
    "white": (245, 245, 245), "purple": (150, 60, 190), "orange": (240, 140, 30), "cyan": (40, 200, 210),
}
BACKGROUNDS = {"black": (15, 15, 15), "gray": (110, 110, 110), "dark blue": (20, 30, 70), "beige": (200, 185, 150)}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
SUPERSAMPLE = 4  # shapes are drawn at 4x and averaged down: smooth edges
MIN_CONTRAST = 120.0  # RGB distance between a shape and its background


def _contrast(a, b) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float32)))


@dataclass
class Scene:
    shape: str
    colour: str
    direction: str
    background: str
    gradient: bool  # background fades from its colour (top) to black (bottom)
    radius: float  # half the shape's extent, pixels
    start: tuple[float, float]  # centre (x, y) at frame 0, pixels
    speed: float  # pixels per frame

    def centre(self, frame: int) -> tuple[float, float]:
        dx, dy = DIRECTIONS[self.direction]
        return self.start[0] + dx * self.speed * frame, self.start[1] + dy * self.speed * frame

    @property
    def caption(self) -> str:
        motion = "stays still" if self.direction == "still" else (
            f"moves to the {self.direction}" if self.direction in ("left", "right") else f"moves {self.direction}")
        background = f"{'a gradient ' + self.background if self.gradient else 'a ' + self.background} background"
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.shape} {motion} on {background}"


def random_scene(rng: random.Random, frames: int, size: int) -> Scene:
    """A scene whose shape stays fully inside the frame for all ``frames``."""
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    direction = rng.choice(list(DIRECTIONS))
    background = rng.choice([b for b in BACKGROUNDS if _contrast(COLOURS[colour], BACKGROUNDS[b]) >= MIN_CONTRAST])
    radius = rng.uniform(0.12, 0.18) * size
    speed = 0.0 if direction == "still" else rng.uniform(0.35, 0.55) * (size - 2 * radius - 2) / max(frames - 1, 1)
    travel = speed * (frames - 1)
    dx, dy = DIRECTIONS[direction]
    low, high = radius + 1, size - radius - 1

    def axis_start(d):
        if d > 0:
            return rng.uniform(low, high - travel)
        if d < 0:
            return rng.uniform(low + travel, high)
        return rng.uniform(low, high)

    return Scene(shape, colour, direction, background, rng.random() < 0.5, radius, (axis_start(dx), axis_start(dy)), speed)


def _shape_mask(scene: Scene, frame: int, size: int) -> np.ndarray:
    """Coverage in [0, 1] of the shape at one frame, (size, size), anti-aliased by supersampling."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    x, y = np.meshgrid(coords, coords)
    cx, cy = scene.centre(frame)
    r = scene.radius
    if scene.shape == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    elif scene.shape == "square":
        inside = (np.abs(x - cx) <= r * 0.85) & (np.abs(y - cy) <= r * 0.85)
    else:  # triangle pointing up, apex at cy - r, base at cy + r
        rel_y = (y - (cy - r)) / (2 * r)
        inside = (rel_y >= 0) & (rel_y <= 1) & (np.abs(x - cx) <= rel_y * r)
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def render(scene: Scene, frames: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of a scene."""
    base = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    if scene.gradient:
        fade = np.linspace(1.0, 0.25, size, dtype=np.float32)[:, None, None]
        background = np.broadcast_to(base * fade, (size, size, 3))
    else:
        background = np.broadcast_to(base, (size, size, 3))
    colour = np.array(COLOURS[scene.colour], dtype=np.float32)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        cover = _shape_mask(scene, t, size)[..., None]
        video[t] = np.clip(background * (1 - cover) + colour * cover + 0.5, 0, 255).astype(np.uint8)
    return video


def write_world(out_dir: str | Path, count: int, seed: int = 0, frames: int = 17, size: int = 64,
                fps: float = 8.0) -> Path:
    """Write ``count`` clips as mp4 + ``annotations.json`` + ``data.txt``; returns the data.txt path."""
    from ..data.video_io import write_video

    out_dir = Path(out_dir)
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        scene = random_scene(random.Random(seed * 1_000_003 + index), frames, size)
        name = f"clip{index:05d}.mp4"
        write_video(videos / name, render(scene, frames, size), fps=fps)
        items.append({"path": name, "cap": [scene.caption], "resolution": {"height": size, "width": size},
                      "num_frames": frames, "fps": fps, "scene": asdict(scene)})
    annotations = out_dir / "annotations.json"
    partial = out_dir / ".annotations.json.partial"
    partial.write_text(json.dumps(items, indent=1))
    os.replace(partial, annotations)
    data_txt = out_dir / "data.txt"
    data_txt.write_text(f"{videos.resolve()},{annotations.resolve()}\n")
    return data_txt


def scene_from_annotation(item: dict) -> Scene:
    fields = dict(item["scene"])
    fields["start"] = tuple(fields["start"])
    return Scene(**fields)

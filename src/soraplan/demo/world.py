"""A synthetic video world: coloured shapes moving over plain or gradient backgrounds.

Every clip shows one shape (circle, square, triangle) of a named colour that moves left, right, up or
down at constant speed, or stays still, with a caption such as "a red circle moves to the right on a
gray background". Diagonal motion ("moves up and to the right") is a motion the embedded model was
never trained on: worlds of it (``motions="diagonal"``) teach and measure a new concept (a LoRA). Clips are deterministic from (seed, index), so a dataset can be regenerated exactly,
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
# unit steps per axis (x right, y down); a diagonal shape moves as fast along each axis as an axis one
DIAGONAL_DIRECTIONS = {"up-right": (1, -1), "up-left": (-1, -1), "down-right": (1, 1), "down-left": (-1, 1)}
ALL_DIRECTIONS = {**DIRECTIONS, **DIAGONAL_DIRECTIONS}
# the motion sets a world can be written with: the shipped model's ("axis"), the new concept, or both
MOTIONS = {"axis": tuple(DIRECTIONS), "diagonal": tuple(DIAGONAL_DIRECTIONS), "all": tuple(ALL_DIRECTIONS)}
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
    rgb: tuple[int, int, int] | None = None  # the shape's colour when not exactly the palette's (drawn clips)
    background_rgb: tuple[int, int, int] | None = None  # likewise the background's
    style: str = "world"  # "world": this module's renderer; "drawn": soraplan.demo.drawn (PIL, hard edges)

    @property
    def shape_rgb(self) -> tuple[int, int, int]:
        return tuple(self.rgb) if self.rgb is not None else COLOURS[self.colour]

    @property
    def base_rgb(self) -> tuple[int, int, int]:
        return tuple(self.background_rgb) if self.background_rgb is not None else BACKGROUNDS[self.background]

    def centre(self, frame: int) -> tuple[float, float]:
        dx, dy = ALL_DIRECTIONS[self.direction]
        return self.start[0] + dx * self.speed * frame, self.start[1] + dy * self.speed * frame

    @property
    def caption(self) -> str:
        if self.direction == "still":
            motion = "stays still"
        elif self.direction in DIAGONAL_DIRECTIONS:
            vertical, horizontal = self.direction.split("-")
            motion = f"moves {vertical} and to the {horizontal}"
        else:
            motion = f"moves to the {self.direction}" if self.direction in ("left", "right") else f"moves {self.direction}"
        background = f"{'a gradient ' + self.background if self.gradient else 'a ' + self.background} background"
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.shape} {motion} on {background}"


RADIUS_RANGE = (0.12, 0.18)  # half the shape's extent, as a fraction of the frame size


def nearest_name(rgb, palette: dict) -> str:
    """The palette's name for a colour: the nearest palette entry in RGB."""
    return min(palette, key=lambda name: _contrast(rgb, palette[name]))


def vary_colours(scene: Scene, rng: random.Random, jitter: int, background_jitter: int) -> Scene:
    """Move the scene's shape and background colours off the palette, by up to ``jitter`` and
    ``background_jitter`` per RGB channel, so that each still has its palette name (the caption stays
    true) and the shape keeps its contrast with the background."""
    def jittered(rgb, amount):
        return tuple(int(min(255, max(0, c + rng.randint(-amount, amount)))) for c in rgb)

    while True:
        rgb = jittered(COLOURS[scene.colour], jitter)
        background_rgb = jittered(BACKGROUNDS[scene.background], background_jitter)
        if (nearest_name(rgb, COLOURS) == scene.colour and nearest_name(background_rgb, BACKGROUNDS) == scene.background
                and _contrast(rgb, background_rgb) >= MIN_CONTRAST):
            scene.rgb, scene.background_rgb = rgb, background_rgb
            return scene


def random_scene(rng: random.Random, frames: int, size: int, radius_range: tuple[float, float] = RADIUS_RANGE,
                 colour_jitter: int = 0, motions: str = "axis") -> Scene:
    """A scene whose shape stays fully inside the frame for all ``frames``; with ``colour_jitter``, its
    colours vary around the palette's (the background's by half as much); its direction is one of
    ``MOTIONS[motions]``."""
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    direction = rng.choice(MOTIONS[motions])
    background = rng.choice([b for b in BACKGROUNDS if _contrast(COLOURS[colour], BACKGROUNDS[b]) >= MIN_CONTRAST])
    radius = rng.uniform(*radius_range) * size
    speed = 0.0 if direction == "still" else rng.uniform(0.35, 0.55) * (size - 2 * radius - 2) / max(frames - 1, 1)
    travel = speed * (frames - 1)
    dx, dy = ALL_DIRECTIONS[direction]
    low, high = radius + 1, size - radius - 1

    def axis_start(d):
        if d > 0:
            return rng.uniform(low, high - travel)
        if d < 0:
            return rng.uniform(low + travel, high)
        return rng.uniform(low, high)

    scene = Scene(shape, colour, direction, background, rng.random() < 0.5, radius, (axis_start(dx), axis_start(dy)), speed)
    return vary_colours(scene, rng, colour_jitter, colour_jitter // 2) if colour_jitter else scene


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


def background_image(scene: Scene, size: int) -> np.ndarray:
    """(size, size, 3) float32: the plain background, or its gradient (full colour at the top, 1/4 at the bottom)."""
    base = np.array(scene.base_rgb, dtype=np.float32)
    if scene.gradient:
        fade = np.linspace(1.0, 0.25, size, dtype=np.float32)[:, None, None]
        return np.broadcast_to(base * fade, (size, size, 3))
    return np.broadcast_to(base, (size, size, 3))


def render(scene: Scene, frames: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of a scene (drawn by its style's renderer)."""
    if scene.style == "drawn":
        from .drawn import render_drawn

        return render_drawn(scene, frames, size)
    background = background_image(scene, size)
    colour = np.array(scene.shape_rgb, dtype=np.float32)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        cover = _shape_mask(scene, t, size)[..., None]
        video[t] = np.clip(background * (1 - cover) + colour * cover + 0.5, 0, 255).astype(np.uint8)
    return video


STYLES = ("world", "drawn")


def write_world(out_dir: str | Path, count: int, seed: int = 0, frames: int = 17, size: int = 64,
                fps: float = 8.0, style: str = "world", colour_jitter: int = 0, motions: str = "axis",
                motion_frames: int | None = None) -> Path:
    """Write ``count`` clips as mp4 + ``annotations.json`` + ``data.txt``; returns the data.txt path.

    ``style="drawn"``: the same kinds of scenes drawn by other means (soraplan.demo.drawn), to test a
    model on inputs the world generator never made. ``colour_jitter``: colours vary around the
    palette's (see ``vary_colours``), so that a model learns colours, not eight of them. ``motions``:
    which directions the shapes take (``MOTIONS``: axis, diagonal or all). ``motion_frames``: the clip
    length the shapes' speed and start are drawn for (default ``frames``: each shape stays in view
    throughout); clips of more ``frames`` go on at that speed, so shapes may leave the picture, as in a
    long video from a model trained on ``motion_frames``-frame clips. The same seed then draws the same
    scenes as a world of ``motion_frames``-frame clips."""
    from ..data.video_io import write_video

    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if motions not in MOTIONS:
        raise ValueError(f"motions must be one of {', '.join(MOTIONS)}, got {motions!r}")
    motion_frames = frames if motion_frames is None else motion_frames
    if not 1 <= motion_frames <= frames:
        raise ValueError(f"motion_frames must lie in [1, frames = {frames}], got {motion_frames}")
    if style == "drawn":
        from .drawn import random_drawn_scene

        def new_scene(rng, frames, size):
            return random_drawn_scene(rng, frames, size, motions=motions)
    else:
        def new_scene(rng, frames, size):
            return random_scene(rng, frames, size, colour_jitter=colour_jitter, motions=motions)

    out_dir = Path(out_dir)
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        scene = new_scene(random.Random(seed * 1_000_003 + index), motion_frames, size)
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
    for key in ("start", "rgb", "background_rgb"):
        if fields.get(key) is not None:
            fields[key] = tuple(fields[key])
    return Scene(**fields)

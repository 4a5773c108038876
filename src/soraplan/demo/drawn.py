"""Clips of the world's kind of scene drawn by other means: held-out inputs the generator never made.

A model trained only on ``soraplan.demo.world`` could learn that generator's quirks (supersampled soft
edges, exactly eight colours, radii between 12 % and 18 % of the frame) instead of "keep the object you
were given". A user's own first frame has none of those quirks, so ``soraplan eval`` also measures on
these: shapes drawn with PIL's ImageDraw (hard, aliased edges), shape and background colours moved off
the palette by up to ``COLOUR_JITTER`` per channel (the caption still names the nearest palette colour),
and radii from 9 % to 22 % of the frame. Motion and captions follow the world's rules.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from .world import Scene, background_image, random_scene, vary_colours

COLOUR_JITTER = 24  # largest change per RGB channel from the palette colour
BACKGROUND_JITTER = 12
DRAWN_RADIUS_RANGE = (0.09, 0.22)


def random_drawn_scene(rng: random.Random, frames: int, size: int, motions: str = "axis") -> Scene:
    """A world scene with other radii and off-palette colours that still carry the palette's names."""
    scene = vary_colours(random_scene(rng, frames, size, radius_range=DRAWN_RADIUS_RANGE, motions=motions), rng,
                         COLOUR_JITTER, BACKGROUND_JITTER)
    scene.style = "drawn"
    return scene


def render_drawn(scene: Scene, frames: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 frames: the scene's shape drawn by ImageDraw (no anti-aliasing)."""
    background = Image.fromarray(np.clip(background_image(scene, size) + 0.5, 0, 255).astype(np.uint8))
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        (cx, cy), r = scene.centre(t), scene.radius
        if scene.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=scene.shape_rgb)
        elif scene.shape == "square":
            half = 0.85 * r
            draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=scene.shape_rgb)
        else:  # pointing up, as the world's
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=scene.shape_rgb)
        video[t] = np.asarray(image)
    return video

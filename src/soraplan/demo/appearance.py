"""Does a shape keep its form, colour and size? The appearance measurements of ``soraplan eval``.

A viewer judges an image-to-video result first by whether the object it was given stays the same
object: a red circle should still be a red circle of the same size when it has moved. These functions
find the one shape of a frame without being told its colour or the background's (so a shape that
turned green is still found, and frames drawn by other means than the world generator work too), and
compare two frames' shapes:

* **shape** — IoU of the two shapes' pixel masks after moving one so that the centroids coincide
  (motion does not count, deformation does); kept when >= ``IOU_KEPT``;
* **colour** — Euclidean RGB distance between the shapes' median colours; kept when <= ``COLOUR_KEPT``;
* **size** — area ratio (later / earlier); kept when within ``SIZE_KEPT`` of 1 either way.

Finding the shape (``segment_shape``): the background of every row is that row's median colour (the
shape covers less than half of any row; plain and top-to-bottom gradient backgrounds are then exact),
every pixel's RGB distance to its row's background is its contrast; pixels with contrast above
``MIN_CONTRAST`` are surely shape, the shape's own contrast is their median, and the shape is every
pixel with at least half of that (an anti-aliased edge pixel belongs when it is >= 50 % covered) —
its largest 8-connected component, so a stray speck elsewhere does not count as part of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MIN_CONTRAST = 40.0  # RGB distance from the background above which a pixel is surely not background
MIN_PIXELS = 6  # fewer shape pixels than this: the shape is lost
IOU_KEPT = 0.6
COLOUR_KEPT = 40.0
SIZE_KEPT = 1.25  # area ratio within [1/1.25, 1.25]


@dataclass
class Shape:
    """The shape found in one frame: its mask (H, W) bool, centroid (x, y), median RGB colour, area (pixels)."""

    mask: np.ndarray
    centroid: tuple[float, float]
    colour: tuple[float, float, float]
    area: int


def segment_shape(frame: np.ndarray) -> Shape | None:
    """The single shape of an (H, W, 3) uint8 frame, or None when no shape stands out of the background."""
    pixels = frame.astype(np.float32)
    background = np.median(pixels, axis=1, keepdims=True)  # (H, 1, 3): each row's colour
    contrast = np.linalg.norm(pixels - background, axis=-1)  # (H, W)
    sure = contrast > MIN_CONTRAST
    if np.count_nonzero(sure) < MIN_PIXELS:
        return None
    mask = contrast >= 0.5 * float(np.median(contrast[sure]))
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == 1 + int(np.argmax(sizes))
    area = int(np.count_nonzero(mask))
    if area < MIN_PIXELS:
        return None
    ys, xs = np.nonzero(mask)
    colour = tuple(float(c) for c in np.median(pixels[mask], axis=0))
    return Shape(mask, (float(xs.mean()), float(ys.mean())), colour, area)


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``mask`` moved by (dx, dy) pixels; what leaves the frame is dropped, nothing wraps around."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    src_y, dst_y = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    src_x, dst_x = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    out[dst_y, dst_x] = mask[src_y, src_x]
    return out


def aligned_iou(a: Shape, b: Shape) -> float:
    """IoU of two shapes' masks with ``b`` moved onto ``a``'s centroid (to the nearest pixel)."""
    dx = round(a.centroid[0] - b.centroid[0])
    dy = round(a.centroid[1] - b.centroid[1])
    moved = _shifted(b.mask, dx, dy)
    union = np.count_nonzero(a.mask | moved)
    return float(np.count_nonzero(a.mask & moved) / union) if union else 0.0


@dataclass
class Kept:
    """How much of ``reference``'s shape a later frame keeps. A lost shape: iou 0, colour_distance
    inf, area_ratio 0 (nothing kept)."""

    iou: float
    colour_distance: float
    area_ratio: float

    @property
    def shape_kept(self) -> bool:
        return self.iou >= IOU_KEPT

    @property
    def colour_kept(self) -> bool:
        return self.colour_distance <= COLOUR_KEPT

    @property
    def size_kept(self) -> bool:
        return 1 / SIZE_KEPT <= self.area_ratio <= SIZE_KEPT

    def as_dict(self) -> dict:
        return {"iou": self.iou, "colour_distance": None if math.isinf(self.colour_distance) else self.colour_distance,
                "area_ratio": self.area_ratio, "shape_kept": self.shape_kept, "colour_kept": self.colour_kept,
                "size_kept": self.size_kept}


def compare(reference: Shape, later: np.ndarray | Shape | None) -> Kept:
    """Shape, colour and size of ``later`` (a frame, or a Shape found in one) against ``reference``."""
    shape = segment_shape(later) if isinstance(later, np.ndarray) else later
    if shape is None:
        return Kept(0.0, math.inf, 0.0)
    distance = float(np.linalg.norm(np.subtract(reference.colour, shape.colour)))
    return Kept(aligned_iou(reference, shape), distance, float(shape.area / reference.area))

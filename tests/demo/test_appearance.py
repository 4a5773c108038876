"""The appearance measurements: the world's own clips keep everything, broken clips are caught."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from soraplan.demo.appearance import compare, segment_shape
from soraplan.demo.drawn import random_drawn_scene
from soraplan.demo.evaluate import appearance_row, probe_frame
from soraplan.demo.world import COLOURS, random_scene, render


def scenes(count: int, drawn: bool = False):
    make = random_drawn_scene if drawn else random_scene
    return [make(random.Random(500 + i), 17, 64) for i in range(count)]


@pytest.mark.parametrize("drawn", [False, True])
def test_true_clips_keep_shape_colour_and_size_in_every_frame(drawn):
    for scene in scenes(24, drawn):
        video = render(scene, 17, 64)
        reference = segment_shape(video[0])
        assert reference is not None
        assert np.linalg.norm(np.subtract(reference.colour, scene.shape_rgb)) < 3  # the shape's own colour
        for frame in video[1:]:
            kept = compare(reference, frame)
            assert kept.iou > 0.85 and kept.colour_distance < 3 and 0.88 < kept.area_ratio < 1.14, (scene, kept)
        row = appearance_row(video, reference, "i2v", scene.direction)
        assert row["direction_ok"] and row["shape_and_colour_kept"] and row["whole_clip_kept"] and row["size_kept"]


def test_a_shape_that_changes_colour_keeps_its_shape_but_not_its_colour():
    scene = dataclasses.replace(scenes(1)[0], colour="red", background="black")
    video = render(scene, 17, 64)
    video[-1] = render(dataclasses.replace(scene, colour="purple"), 17, 64)[-1]
    kept = compare(segment_shape(video[0]), video[-1])
    assert kept.shape_kept and kept.size_kept and not kept.colour_kept
    assert kept.colour_distance == pytest.approx(np.linalg.norm(np.subtract(COLOURS["red"], COLOURS["purple"])), abs=3)
    row = appearance_row(video, segment_shape(video[0]), "i2v", scene.direction)
    assert not row["shape_and_colour_kept"] and not row["whole_clip_kept"]


def test_another_shape_or_size_is_not_kept():
    scene = dataclasses.replace(scenes(1)[0], shape="circle", radius=9.0, start=(32.0, 32.0), direction="still")
    first = render(scene, 1, 64)[0]
    reference = segment_shape(first)
    triangle = render(dataclasses.replace(scene, shape="triangle"), 1, 64)[0]
    assert not compare(reference, triangle).shape_kept and compare(reference, triangle).colour_kept
    bigger = compare(reference, render(dataclasses.replace(scene, radius=12.0), 1, 64)[0])
    assert bigger.area_ratio == pytest.approx((12 / 9) ** 2, rel=0.08) and not bigger.size_kept
    moved = compare(reference, render(dataclasses.replace(scene, start=(20.0, 45.0)), 1, 64)[0])
    assert moved.iou > 0.9  # where it went is the direction's business, not the shape's


def test_a_lost_shape_keeps_nothing_and_specks_do_not_count():
    scene = scenes(1)[0]
    video = render(scene, 17, 64)
    reference = segment_shape(video[0])
    blank = np.broadcast_to(np.median(video[0].reshape(-1, 3), axis=0).astype(np.uint8), video[0].shape).copy()
    lost = compare(reference, blank)
    assert (lost.iou, lost.area_ratio) == (0.0, 0.0) and not lost.colour_kept
    speckled = video[-1].copy()
    speckled[2, 2] = speckled[60, 61] = (255, 255, 255) if scene.colour != "white" else (0, 0, 0)
    assert compare(reference, speckled).iou == pytest.approx(compare(reference, video[-1]).iou)


def test_transition_is_probed_between_its_given_frames():
    assert probe_frame("i2v", 17) == probe_frame("continuation", 17) == 16
    assert probe_frame("transition", 17) == 8


def test_drawn_scenes_are_off_the_generator():
    drawn = scenes(40, drawn=True)
    assert all(s.style == "drawn" and s.rgb != COLOURS[s.colour] for s in drawn[:10])
    radii = [s.radius / 64 for s in drawn]
    assert min(radii) < 0.12 and max(radii) > 0.18  # sizes the world never shows
    scene = drawn[0]
    frame = render(scene, 1, 64)[0]
    colours = {tuple(c) for c in frame.reshape(-1, 3)}
    background = {tuple(c) for c in render(dataclasses.replace(scene, start=(-100.0, -100.0)), 1, 64)[0].reshape(-1, 3)}
    assert colours - background == {scene.rgb}  # hard edges: only the shape's colour is new

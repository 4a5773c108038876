"""The evaluation's measurements on ground truth: the world itself must score perfectly."""

from __future__ import annotations

import random

import numpy as np
import pytest

from soraplan.demo.evaluate import EvalResult, direction_of, jitter, psnr, track
from soraplan.demo.world import COLOURS, random_scene, render


@pytest.mark.parametrize("seed", range(12))
def test_tracking_recovers_the_true_direction_without_jitter(seed):
    scene = random_scene(random.Random(100 + seed), frames=17, size=64)
    path = track(render(scene, 17, 64), COLOURS[scene.colour])
    assert direction_of(path) == scene.direction
    assert jitter(path) < 1.0  # constant speed: a straight, even path (up to pixel quantisation at edges)


@pytest.mark.parametrize("seed", range(8))
def test_diagonal_directions_are_told_apart_among_eight(seed):
    diagonal = random_scene(random.Random(200 + seed), frames=17, size=64, motions="diagonal")
    path = track(render(diagonal, 17, 64), COLOURS[diagonal.colour])
    assert direction_of(path, diagonals=True) == diagonal.direction
    assert direction_of(path) in diagonal.direction.split("-")  # four-way: the dominant axis
    straight = random_scene(random.Random(300 + seed), frames=17, size=64)
    assert direction_of(track(render(straight, 17, 64), COLOURS[straight.colour]), diagonals=True) == straight.direction


def test_direction_and_jitter_see_a_broken_video():
    scene = random_scene(random.Random(7), frames=17, size=64)
    while scene.direction == "still":
        scene = random_scene(random.Random(scene.start[0]), frames=17, size=64)
    video = render(scene, 17, 64)
    reversed_path = track(video[::-1], COLOURS[scene.colour])
    assert direction_of(reversed_path) != scene.direction
    shuffled = video[np.random.default_rng(0).permutation(17)]
    assert jitter(track(shuffled, COLOURS[scene.colour])) > 2 * jitter(track(video, COLOURS[scene.colour])) + 1
    blank = np.zeros_like(video)
    assert direction_of(track(blank, COLOURS[scene.colour])) is None


def test_psnr():
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(a, a) == 99.0
    b = a.copy()
    b[0, 0, 0] += 16  # mse = 256 / 192
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (256 / 192)))


def test_summary_counts_clips_whatever_tasks_ran():
    """`soraplan eval --tasks transition` must still say how many clips it measured."""
    rows = [{"clip": f"clip{i}.mp4", "task": "transition", "first_psnr": 30.0, "last_psnr": 24.0 + i, "jitter": 1.0,
             "direction_ok": i > 0, "shape_kept": True, "vae_shape_kept": i < 2} for i in range(3)]
    summary = EvalResult(rows).summary()
    assert summary["clips"] == 3 and summary["transition_last_psnr"] == pytest.approx(25.0)
    assert summary["transition_direction_rate"] == pytest.approx(2 / 3)
    assert summary["transition_shape_kept_rate"] == 1.0 and summary["vae_transition_shape_kept_rate"] == pytest.approx(2 / 3)
    assert not any(key.startswith("i2v") for key in summary)

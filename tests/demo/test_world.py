"""The synthetic world: deterministic, captions that say what the pixels do, usable as training data."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from soraplan.data import read_video
from soraplan.data.annotations import DataConfig, load_training_samples
from soraplan.demo.world import (ALL_DIRECTIONS, COLOURS, DIAGONAL_DIRECTIONS, DIRECTIONS, random_scene, render,
                                  scene_from_annotation, write_world)


def centroid(frame: np.ndarray, colour) -> np.ndarray:
    """(x, y) of the pixels close to a colour."""
    close = np.linalg.norm(frame.astype(np.float32) - np.array(colour, np.float32), axis=-1) < 40
    ys, xs = np.nonzero(close)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("motions, seed", [("axis", s) for s in range(6)] + [("diagonal", s) for s in range(6)])
def test_shape_moves_as_captioned_and_stays_in_frame(motions, seed):
    scene = random_scene(random.Random(seed), frames=17, size=64, motions=motions)
    assert scene.direction in (DIAGONAL_DIRECTIONS if motions == "diagonal" else DIRECTIONS)
    video = render(scene, 17, 64)
    first, last = centroid(video[0], COLOURS[scene.colour]), centroid(video[-1], COLOURS[scene.colour])
    dx, dy = ALL_DIRECTIONS[scene.direction]
    motion = last - first
    if scene.direction == "still":
        assert np.abs(motion).max() < 0.5
    else:
        along = np.array([dx, dy]) / np.hypot(dx, dy)
        assert motion @ along > 4  # a clear move the captioned way
        assert abs(motion @ np.array([-along[1], along[0]])) < 0.5  # and no drift across it
    for t in (0, 16):
        cx, cy = scene.centre(t)
        assert scene.radius <= cx <= 64 - scene.radius and scene.radius <= cy <= 64 - scene.radius
    article = "an" if scene.colour[0] in "aeiou" else "a"
    assert scene.caption.startswith(f"{article} {scene.colour} {scene.shape} ")


def test_diagonal_captions_name_both_axes_and_axis_worlds_are_unchanged():
    scene = random_scene(random.Random(3), frames=17, size=64, motions="diagonal")
    vertical, horizontal = scene.direction.split("-")
    assert f" moves {vertical} and to the {horizontal} on " in scene.caption
    # the option leaves the shipped model's world (what it was trained and measured on) as it was
    assert random_scene(random.Random(3), 17, 64) == random_scene(random.Random(3), 17, 64, motions="axis")
    mixed = {random_scene(random.Random(i), 17, 64, motions="all").direction for i in range(60)}
    assert mixed == set(ALL_DIRECTIONS)


def test_world_is_deterministic_and_loads_as_training_data(tmp_path):
    data_a = write_world(tmp_path / "a", 5, seed=3, frames=9, size=32)
    data_b = write_world(tmp_path / "b", 5, seed=3, frames=9, size=32)
    items = json.loads((tmp_path / "a" / "annotations.json").read_text())
    assert items == json.loads((tmp_path / "b" / "annotations.json").read_text())
    scene = scene_from_annotation(items[2])
    decoded, fps = read_video(tmp_path / "a" / "videos" / items[2]["path"])
    assert decoded.shape == (9, 32, 32, 3) and fps == 8.0
    assert np.abs(decoded.astype(int) - render(scene, 9, 32).astype(int)).mean() < 6  # H.264 keeps the scene
    config = DataConfig(num_frames=9, max_height=32, max_width=32, hw_stride=16, train_fps=8, min_num_frames=9)
    assert len(load_training_samples(data_a, config).samples) == 5
    assert data_b.read_text() != data_a.read_text()  # each world points at its own files
    other = json.loads(json.dumps([i["cap"] for i in items]))
    assert len({c[0] for c in other}) > 1


def test_synth_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "soraplan", "data", "synth", "-o", str(tmp_path / "w"), "--n", "3",
                             "--num_frames", "9", "--size", "32"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "wrote 3 clips" in result.stdout
    assert len(list((tmp_path / "w" / "videos").glob("*.mp4"))) == 3
    drawn = subprocess.run([sys.executable, "-m", "soraplan", "data", "synth", "-o", str(tmp_path / "d"), "--n", "3",
                            "--num_frames", "9", "--size", "32", "--style", "drawn", "--motions", "diagonal"],
                           capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr
    items = json.loads((tmp_path / "d" / "annotations.json").read_text())
    assert {i["scene"]["direction"] for i in items} <= set(DIAGONAL_DIRECTIONS)
    assert all(" and to the " in i["cap"][0] and i["scene"]["style"] == "drawn" for i in items)
    bad = subprocess.run([sys.executable, "-m", "soraplan", "data", "synth", "-o", str(tmp_path / "x"), "--size", "15"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--size" in bad.stderr


@pytest.mark.parametrize("style", ["world", "drawn"])
def test_long_clips_go_on_at_the_speed_of_short_ones(tmp_path, style):
    """--num_frames 33 --motion_frames 9: the scenes of a 9-frame world (same seed), whose motion goes on
    for 33 frames at that speed, so a moving shape may leave the picture; bad values are one-line errors."""
    write_world(tmp_path / "short", 6, seed=4, frames=9, size=32, style=style)
    write_world(tmp_path / "long", 6, seed=4, frames=33, size=32, style=style, motion_frames=9)
    short = json.loads((tmp_path / "short" / "annotations.json").read_text())
    long = json.loads((tmp_path / "long" / "annotations.json").read_text())
    assert [i["scene"] for i in long] == [i["scene"] for i in short] and {i["num_frames"] for i in long} == {33}
    left = 0
    for item in long:
        scene = scene_from_annotation(item)
        video = render(scene, 33, 32)
        assert np.array_equal(video[:9], render(scene, 9, 32))  # the short clip, then more of the same motion
        cx, cy = scene.centre(32)
        left += not (0 <= cx < 32 and 0 <= cy < 32)
        decoded, _ = read_video(tmp_path / "long" / "videos" / item["path"])
        assert decoded.shape == (33, 32, 32, 3)
    assert left > 0  # some shapes are gone by frame 32, as in a long video
    bad = subprocess.run([sys.executable, "-m", "soraplan", "data", "synth", "-o", str(tmp_path / "x"), "--num_frames",
                          "9", "--motion_frames", "17"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--motion_frames" in bad.stderr and "Traceback" not in bad.stderr


def test_colour_jitter_varies_colours_but_keeps_their_names_and_the_plain_world():
    from soraplan.demo.world import BACKGROUNDS, MIN_CONTRAST, nearest_name

    plain = [random_scene(random.Random(i), 17, 64) for i in range(30)]
    varied = [random_scene(random.Random(i), 17, 64, colour_jitter=40) for i in range(30)]
    assert all(s.rgb is None and s.shape_rgb == COLOURS[s.colour] for s in plain)  # the world as before
    for p, v in zip(plain, varied):
        assert (v.shape, v.colour, v.direction, v.background, v.start) == (p.shape, p.colour, p.direction, p.background, p.start)
        assert nearest_name(v.rgb, COLOURS) == v.colour and nearest_name(v.background_rgb, BACKGROUNDS) == v.background
        assert max(abs(a - b) for a, b in zip(v.rgb, COLOURS[v.colour])) <= 40
        assert np.linalg.norm(np.subtract(v.rgb, v.background_rgb)) >= MIN_CONTRAST
        frame = render(v, 1, 64)[0]
        assert np.abs(frame.astype(int) - np.array(v.rgb)).sum(-1).min() <= 3  # drawn in its own colour
    assert len({s.rgb for s in varied}) == 30

"""`soraplan eval --long`'s measurements on ground truth (the world itself) and on broken videos."""

from __future__ import annotations

import random
from dataclasses import asdict

import numpy as np
import pytest

from soraplan.demo.evaluate_long import LongEvalResult, frame_steps, in_view, segment_rows
from soraplan.demo.world import Scene, random_scene, render
from soraplan.pipelines.long_video import plan_long_video


def segments_of(num_frames: int, clip: int = 17) -> list[dict]:
    return [dict(asdict(s), segment=s.index) for s in plan_long_video(num_frames, clip, ["p"]).segments]


def moving_scene() -> Scene:
    """A 33-frame scene of the world whose shape moves (a still one has no frame steps to compare)."""
    scene = random_scene(random.Random(3), frames=33, size=64)
    while scene.direction == "still":
        scene = random_scene(random.Random(scene.start[0] + 1), frames=33, size=64)
    return scene


def measured(video, direction, num_frames=33) -> dict:
    rows, steps = segment_rows(video, segments_of(num_frames), direction, diagonals=False)
    result = LongEvalResult([{"clip": "c", "anchor": False, "direction": direction, **row} for row in rows],
                            [{"anchor": False, **steps}])
    return result.summary()["anchor_off"]


@pytest.mark.parametrize("seed", range(6))
def test_the_world_itself_keeps_everything_and_has_no_seams(seed):
    scene = random_scene(random.Random(500 + seed), frames=33, size=64)
    summary = measured(render(scene, 33, 64), scene.direction)
    for segment in summary["segments"]:
        assert segment == {"direction_ok": 1.0, "in_view": 1.0, "shape_and_colour_kept": 1.0}
    assert summary["kept_target_met"] and summary["seam_target_met"]
    if scene.direction != "still":
        assert 0.6 < summary["seam_ratio"] < 1.4  # a seam is an ordinary frame step


def test_a_seam_jump_and_a_recoloured_shape_miss_the_targets():
    scene = moving_scene()
    video = render(scene, 33, 64).astype(np.int16)
    video[17:] += 12  # segment 2 (new frames from 17) comes out brighter: a visible seam
    summary = measured(np.clip(video, 0, 255).astype(np.uint8), scene.direction)
    assert summary["seam_ratio"] > 1.5 and not summary["seam_target_met"]
    recoloured = render(scene, 33, 64)
    shape = np.linalg.norm(recoloured.astype(float) - recoloured[:, :1, :1].astype(float), axis=-1) > 60
    recoloured[20:][shape[20:]] = (255 - recoloured[20:][shape[20:]])  # the shape's colour inverted later on
    summary = measured(recoloured, scene.direction)
    assert summary["segments"][0]["shape_and_colour_kept"] == 1.0
    assert summary["segments"][-1]["shape_and_colour_kept"] == 0.0 and not summary["kept_target_met"]


def test_a_jump_inside_the_overlap_is_a_seam_too():
    """Crossfading moves a seam's jump into the overlap frames (12-16 for segment 2, new frames from 17):
    a jump there counts as the seam, however ordinary the step into the new frames is."""
    scene = moving_scene()
    assert segments_of(33)[1]["start"] == 12
    video = render(scene, 33, 64).astype(np.int16)
    video[14:] += 12  # a step inside the overlap, two frames before the new frames
    summary = measured(np.clip(video, 0, 255).astype(np.uint8), scene.direction)
    assert summary["seam_ratio"] > 1.5 and not summary["seam_target_met"]


def test_frames_in_pairs_are_no_seam_but_a_jump_between_pairs_is():
    """WF-VAE decodes frames in pairs, so a model's frame steps alternate small and large: a seam-free
    video of that kind is no seam (its seam windows are judged against stretches inside of the same
    length, not against the mean step), while a jump at the seam still is one."""
    scene = moving_scene()
    smooth = render(scene, 33, 64)
    paired = smooth.copy()
    paired[2::2] = smooth[1:-1:2]  # frame 2k repeats frame 2k - 1: steps x, 0, 2x, 0, 2x, ...
    steps = frame_steps(paired)
    assert steps[2::2].mean() > 0 and steps[1::2].max() == 0  # the pattern is there
    summary = measured(paired, scene.direction)
    assert summary["seam_target_met"] and 0.6 < summary["seam_ratio"] < 1.4
    assert summary["mean_seam_step"] / summary["mean_inside_step"] > 1.5  # what a window-max / mean-step ratio said
    jumped = paired.astype(np.int16)
    jumped[17:] += 12  # segment 2's new frames come out brighter
    summary = measured(np.clip(jumped, 0, 255).astype(np.uint8), scene.direction)
    assert summary["seam_ratio"] > 1.5 and not summary["seam_target_met"]


def test_a_shape_that_leaves_the_picture_is_not_in_view():
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[20:30, 20:30] = (255, 0, 0)
    assert in_view(frame)
    frame[:] = 0
    frame[20:30, 58:64] = (255, 0, 0)  # cut by the right border
    assert not in_view(frame)
    assert not in_view(np.zeros((64, 64, 3), np.uint8))


def test_still_and_moving_clips_are_also_counted_apart():
    """A moving shape that leaves the picture takes the last segment's rate down to the still clips';
    the summary shows each kind's own rates, and the CLI prints them."""
    from dataclasses import replace

    from soraplan.cli.evaluate import format_long

    moving = moving_scene()
    leaving = replace(moving, speed=moving.speed * 2.5)  # in view at frame 16, gone by frame 28
    still = replace(moving, direction="still", speed=0.0)
    rows, videos = [], []
    for name, scene in (("still", still), ("moving", moving), ("leaving", leaving)):
        clip_rows, steps = segment_rows(render(scene, 33, 64), segments_of(33), scene.direction, diagonals=False)
        rows += [{"clip": name, "anchor": True, "direction": scene.direction, **row} for row in clip_rows]
        videos.append({"anchor": True, **steps})
    summary = LongEvalResult(rows, videos).summary()["anchor_on"]
    assert summary["by_motion"]["still"]["clips"] == 1 and summary["by_motion"]["moving"]["clips"] == 2
    still_last, moving_last = (summary["by_motion"][m]["segments"][-1] for m in ("still", "moving"))
    assert still_last == {"direction_ok": 1.0, "in_view": 1.0, "shape_and_colour_kept": 1.0}
    assert moving_last["in_view"] == 0.5 and moving_last["shape_and_colour_kept"] == 1.0  # judged on the one in view
    assert summary["segments"][-1]["in_view"] == pytest.approx(2 / 3)
    printed = format_long({"world": {"anchor_on": summary}})
    assert "world / anchor_on / moving (2 clips)" in printed and "in view 100% / 50% / 50%" in printed


@pytest.mark.slow
def test_eval_long_on_the_demo_model_writes_every_segment(tmp_path):
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "soraplan", "eval", "--long", "2", "--clips", "2", "--sets", "world",
               "--num_sampling_steps", "8", "--output", str(tmp_path / "long.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world / anchor_on / seams" in result.stdout and "33-frame videos from 17-frame segments" in result.stdout
    summary = json.loads((tmp_path / "long.json").read_text())["summary"]["world"]
    assert set(summary) == {"anchor_off", "anchor_on"}
    assert len(summary["anchor_off"]["segments"]) == 3 and summary["anchor_on"]["clips"] == 2
    bad = subprocess.run(command[:5] + ["1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--long K makes videos K times the model's clip" in bad.stderr.strip().splitlines()[-1]

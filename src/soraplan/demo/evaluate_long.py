"""Long videos on held-out clips of the synthetic world: ``soraplan eval --long K``.

Each clip's first frame and caption make an image-to-video ``K`` times the model's clip length
(``K·(F - 1) + 1`` frames: 65 from the demo's 17), once without and once with anchoring
(soraplan.pipelines.long_video). Every segment is measured against the **first** frame of the whole
video, on the frames it adds:

* direction: the tracked shape moves the captioned way over the segment's frames (the ones it was
  given and the ones it made: a short last segment adds too few frames to tell "still" from slow);
  counted over the clips whose shape is tracked at both ends of the segment;
* in view: the shape is found at the segment's last frame without touching the border. The world's
  shapes keep moving at the speed the model learned from 17-frame clips, about a frame's width in 64
  frames, so a moving shape *should* leave the picture in a long video; a shape that has left is no
  drift, and shape and colour are judged on the shapes still in view;
* shape and colour kept: at the segment's last frame, against the first frame's shape (the i2v rule
  of soraplan.demo.evaluate), over the clips whose shape is in view there;
* seams: a seam's step is the largest mean absolute frame difference over the frames where a seam
  can show: from the last frame before the segment's overlap to its first new frame (with
  ``crossfade`` the overlap frames are blended, which spreads a jump over them instead of removing
  it, so the single step into the new frames would flatter it). The seam ratio divides the mean seam
  step by the same statistic inside segments: the largest step of a run of as many consecutive steps
  (``4·O - 2`` for an overlap of ``O`` latent frames), averaged over every such run that lies in the
  segments' new frames away from the seams; 1 is a seam no larger than an ordinary stretch of video.
  Like against like matters: WF-VAE decodes frames in pairs (its temporal Haar step), so the model's
  frame steps alternate small, large, small..., and the largest of six steps is about twice their
  mean in a seam-free stretch of its videos (measured on the demo model); dividing a window's largest
  step by the mean step would call every stretch a seam.

Targets (the long-video issue): the last segment keeps shape and colour within 10 points of the first
segment, and seams are no larger than 1.5 times the frame-to-frame change inside segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .appearance import compare, segment_shape
from .evaluate import direction_of, load_world, track
from .world import DIAGONAL_DIRECTIONS, scene_from_annotation

KEPT_SLACK = 0.10  # the last segment's shape-and-colour rate may be this much below the first's
SEAM_RATIO = 1.5  # a seam may be this many times an ordinary stretch of as many frame steps


def frame_steps(video: np.ndarray) -> np.ndarray:
    """(T - 1,) mean absolute difference of consecutive uint8 frames, in grey levels."""
    frames = video.astype(np.float32)
    return np.abs(frames[1:] - frames[:-1]).mean(axis=(1, 2, 3))


def in_view(frame: np.ndarray) -> bool:
    """A shape is found and does not touch the border (one that is leaving is cut off)."""
    shape = segment_shape(frame)
    if shape is None:
        return False
    mask = shape.mask
    return not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def segment_rows(video: np.ndarray, segments: list[dict], direction: str, diagonals: bool) -> tuple[list[dict], dict]:
    """Per segment: direction, in view, kept; and the video's seam and inside frame steps."""
    reference = segment_shape(video[0])
    path = track(video, reference.colour)
    steps = frame_steps(video)
    rows, seams, near_seams, new_steps, window = [], [], set(), [], 0
    for segment in segments:
        start = segment["start"] + segment["overlap"]  # its first new frame
        end = segment["start"] + segment["num_frames"]
        if start > 0 and segment["overlap"]:
            seam_window = range(max(segment["start"] - 1, 0), start)  # step k: frame k -> k + 1
            seams.append(float(steps[list(seam_window)].max()))
            near_seams.update(seam_window)
            window = max(window, len(seam_window))
        new_steps += range(start, end - 1)
        window_frames = path[segment["start"]:end]
        moved = direction_of(window_frames, diagonals) if len(window_frames) > 1 else None
        visible = in_view(video[end - 1])
        kept = compare(reference, video[end - 1]) if visible else None
        rows.append({"segment": segment["segment"], "generated_direction": moved,
                     "direction_ok": None if moved is None else moved == direction, "in_view": visible,
                     "shape_and_colour_kept": None if kept is None else bool(kept.shape_kept and kept.colour_kept)})
    inside_steps = sorted({k for k in new_steps if k not in near_seams})  # (a later overlap lies in new frames)
    inside = set(inside_steps)
    # the seam's statistic on seam-free stretches: the largest of `window` consecutive inside steps
    maxima = [float(steps[k:k + window].max()) for k in inside_steps
              if window and all(k + j in inside for j in range(window))]
    return rows, {"seam_steps": seams, "inside_steps": [float(steps[k]) for k in inside_steps],
                  "inside_window_maxima": maxima}


@dataclass
class LongEvalResult:
    rows: list[dict] = field(default_factory=list)  # one per (clip, anchor, segment)
    videos: list[dict] = field(default_factory=list)  # one per (clip, anchor): its frame steps

    def summary(self) -> dict:
        """Per anchoring mode ("anchor_off" / "anchor_on"): per segment the direction, in-view and
        kept rates (of all clips, and of the still and the moving ones apart), and the seam ratio; then
        whether the targets hold."""
        out = {}
        for anchor in sorted({r["anchor"] for r in self.rows}):
            rows = [r for r in self.rows if r["anchor"] == anchor]
            count = max(r["segment"] for r in rows) + 1
            per_segment = _per_segment(rows, count)
            # still and moving clips apart: a moving shape leaves the picture in a long video, so the
            # last segments' kept rate rests mostly on the still clips; this shows each kind's own
            by_motion = {}
            for motion in ("still", "moving"):
                mine = [r for r in rows if (r["direction"] == "still") == (motion == "still")]
                if mine:
                    by_motion[motion] = {"clips": len({r["clip"] for r in mine}),
                                         "segments": _per_segment(mine, count)}
            seams = [v for video in self.videos if video["anchor"] == anchor for v in video["seam_steps"]]
            inside = [v for video in self.videos if video["anchor"] == anchor for v in video["inside_steps"]]
            stretches = [v for video in self.videos if video["anchor"] == anchor
                         for v in video["inside_window_maxima"]]
            seam_ratio = (float(np.mean(seams) / np.mean(stretches))
                          if seams and stretches and np.mean(stretches) > 0 else None)
            first, last = per_segment[0]["shape_and_colour_kept"], per_segment[-1]["shape_and_colour_kept"]
            out["anchor_on" if anchor else "anchor_off"] = {
                "segments": per_segment, "by_motion": by_motion, "seam_ratio": seam_ratio,
                "mean_seam_step": float(np.mean(seams)) if seams else None,
                "mean_inside_step": float(np.mean(inside)) if inside else None,
                "mean_inside_stretch_max": float(np.mean(stretches)) if stretches else None,
                "kept_target_met": None if first is None or last is None else last >= first - KEPT_SLACK,
                "seam_target_met": None if seam_ratio is None else seam_ratio <= SEAM_RATIO,
                "clips": len({r["clip"] for r in rows})}
        return out


def _per_segment(rows: list[dict], count: int) -> list[dict]:
    """Per segment index, the direction, in-view and kept rates of these rows."""
    return [{key: _rate([r[key] for r in rows if r["segment"] == index])
             for key in ("direction_ok", "in_view", "shape_and_colour_kept")} for index in range(count)]


def _rate(values: list) -> float | None:
    counted = [v for v in values if v is not None]
    return sum(counted) / len(counted) if counted else None


def evaluate_long(pipe, data_txt, clips: int = 64, multiple: int = 4, anchors: tuple[bool, ...] = (False, True),
                  num_inference_steps: int | None = None, guidance_scale: float | None = None, seed: int = 0,
                  overlap: int | None = None, crossfade: bool = True, progress=None) -> LongEvalResult:
    """Long image-to-videos of ``multiple`` clip lengths from the first frames of a world's clips."""
    from ..data.video_io import read_video
    from ..pipelines.long_video import DEFAULT_OVERLAP, generate_long_video

    result = LongEvalResult()
    world = load_world(data_txt)[:clips]
    diagonals = any(item["scene"]["direction"] in DIAGONAL_DIRECTIONS for _, item in world)
    clip_frames = pipe.clip_frames
    num_frames = multiple * (clip_frames - 1) + 1
    for index, (path, item) in enumerate(world):
        scene = scene_from_annotation(item)
        given, _ = read_video(path, max_frames=1)
        if segment_shape(given[0]) is None:
            raise ValueError(f"no shape stands out of the background in the first frame of {path}")
        caption = item["cap"][0]
        for anchor in anchors:
            out = generate_long_video(pipe, caption, [given[0]], num_frames=num_frames, anchor=anchor,
                                      crossfade=crossfade, overlap=overlap or DEFAULT_OVERLAP,
                                      height=given.shape[1], width=given.shape[2],
                                      num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                      generator=torch.Generator().manual_seed(seed + index))
            rows, steps = segment_rows(out.videos[0], out.segments, scene.direction, diagonals)
            result.rows += [{"clip": item["path"], "anchor": anchor, "direction": scene.direction, **row}
                            for row in rows]
            result.videos.append({"clip": item["path"], "anchor": anchor, **steps})
        if progress is not None:
            progress(index + 1, len(world))
    return result

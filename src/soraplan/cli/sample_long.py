"""``soraplan sample`` for videos longer than the model's clip (soraplan.pipelines.long_video): the
options, their checks, and one prompt's long video streamed to its mp4 a segment at a time."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import UserError

OVERLAP_DEFAULT = 2  # latent frames; the pipeline module's DEFAULT_OVERLAP (not imported: it loads diffusers)


def add_long_video_options(parser) -> None:
    group = parser.add_argument_group(
        "long videos", "a --num_frames beyond the model's clip length is made as a chain of overlapping "
        "continuations (README, \"Long videos\")")
    group.add_argument("--segment_frames", type=int, default=None, help=(
        "frames per segment, 4k+1 (default: the model's clip length, default_num_frames of its pipeline folder: "
        "93 for the release, 17 for the demo model)"))
    group.add_argument("--extend", type=int, default=None, metavar="K", help=(
        "K segments after the first: sets --num_frames to F + K·(F - P) (F segment frames, P overlap frames)"))
    group.add_argument("--overlap", type=int, default=OVERLAP_DEFAULT, help=(
        "latent frames each segment is given from the video so far (2: 5 pixel frames)"))
    group.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=None, help=(
        "also give every later segment the video's first frame (or the last keyframe image before it), "
        "re-stating the object's look: as a reference frame before the segment for a model trained for it "
        "(soraplan train --continuation_anchor), else as its frame 0. Default: on for a model trained with the "
        "reference frame, off for any other (each measured better that way; README)"))
    group.add_argument("--crossfade", action=argparse.BooleanOptionalAction, default=True, help=(
        "fade each overlap from the previous segment's frames to the next one's own, spreading the step at the "
        "seam over the overlap (on by default: smaller seams, measured; --no-crossfade keeps the overlap frames "
        "exactly what the next segment was given)"))
    group.add_argument("--loop", action="store_true", help="the last frame is the first: the video plays on repeat")
    group.add_argument("--storyboard", metavar="JSON", help=(
        "a prompt and frame count per part, [{\"prompt\": \"...\", \"num_frames\": 33}, ...]: the video's length "
        "is their sum (instead of --text_prompt; or write one prompt line with '|' between segments)"))


def read_storyboard(path: str) -> list[tuple[str, int]]:
    from ..pipelines.long_video import parse_storyboard

    file = Path(path)
    if not file.is_file():
        raise UserError(f"storyboard {file} does not exist")
    try:
        parts, _ = parse_storyboard(json.loads(file.read_text()), None)
    except json.JSONDecodeError as error:
        raise UserError(f"storyboard {file} is not JSON ({error})") from None
    except ValueError as error:
        raise UserError(f"storyboard {file}: {error}") from None
    return parts


def check_long_arguments(args) -> None:
    if args.storyboard and args.text_prompt:
        raise UserError("give --storyboard (prompts with frame counts) or --text_prompt, not both")
    if args.storyboard and args.extend is not None:
        raise UserError("a --storyboard sets the video's length: drop --extend")
    if args.extend is not None and args.extend < 1:
        raise UserError(f"--extend must be at least 1 (segments after the first), got {args.extend}")
    if args.overlap < 1:
        raise UserError(f"--overlap must be at least 1 latent frame, got {args.overlap}")
    if args.segment_frames is not None and (args.segment_frames < 1 or (args.segment_frames - 1) % 4):
        raise UserError(f"--segment_frames {args.segment_frames} is not 4k+1 (e.g. 17, 93)")


def segment_prompts(job, template: str):
    """The prompt(s) of one job's long video: storyboard parts, '|'-separated segments, or one."""
    if job.storyboard:
        return [(template.format(text.strip()), frames) for text, frames in job.storyboard]
    return [template.format(text.strip()) for text in job.text.split("|")]


def is_long(args, job, clip_frames: int) -> bool:
    return args.num_frames > clip_frames or args.loop or bool(job.storyboard) or "|" in job.text


def resolve_num_frames(args, clip_frames: int, job=None) -> None:
    """--extend and --storyboard set --num_frames."""
    if args.extend is not None:
        args.num_frames = clip_frames + args.extend * (clip_frames - (4 * args.overlap - 3))
    if job is not None and job.storyboard:
        args.num_frames = sum(frames for _, frames in job.storyboard)


class FrameHash:
    """frames_sha256 of a video that arrives a run of frames at a time (soraplan.provenance's rule)."""

    def __init__(self, num_frames: int):
        self.num_frames, self.digest = num_frames, None

    def update(self, frames: np.ndarray) -> None:
        if self.digest is None:
            self.digest = hashlib.sha256(repr((self.num_frames, *frames.shape[1:])).encode())
        self.digest.update(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def sample_long_video(pipe, args, job, *, steps: int, stem: str, out_dir: Path, writer_rank: bool, record: dict,
                      rank: int, sample_index: int | None, generator, announce) -> tuple[Path | None, str | None]:
    """One long video of ``job``: generated segment by segment, each run of new frames appended to
    ``<stem>.mp4`` as it comes (by the writing rank; the others only compute), with its sidecar.
    Returns (the mp4, its frames' hash), or (None, None) on a rank that does not write."""
    from ..data.video_io import VideoWriter
    from ..provenance import to_json, write_sidecar
    from ..pipelines.long_video import generate_long_video

    path = out_dir / f"{stem}.mp4"
    frames_hash = FrameHash(args.num_frames)
    comment = to_json({**record, "output": path.name, "sample_index": sample_index}) if writer_rank else None

    def progress(index: int, count: int) -> None:
        announce(f"[rank {rank}] prompt {job.index}: segment {index + 1} of {count}")

    try:
        if writer_rank:
            with VideoWriter(path, args.fps, args.crf, comment) as writer:
                def write(frames):
                    writer.write(frames)
                    frames_hash.update(frames)

                result = _generate(pipe, args, job, steps, generator, write, progress, generate_long_video)
        else:
            result = _generate(pipe, args, job, steps, generator, lambda frames: None, progress, generate_long_video)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(f"prompt {job.index}: {error}") from None
    if not writer_rank:
        return None, None
    write_sidecar(path, {**record, "output": path.name, "sample_index": sample_index,
                         "frames_sha256": frames_hash.hexdigest(),
                         "video": {**record["video"], "height": result.height, "width": result.width},
                         "long_video": {**record["long_video"], "segments": result.segments}})
    return path, frames_hash.hexdigest()


def _generate(pipe, args, job, steps, generator, on_frames, on_segment, generate_long_video):
    from ..masks import MaskType

    return generate_long_video(
        pipe, segment_prompts(job, args.prompt_template), job.conditions, num_frames=args.num_frames,
        segment_frames=args.segment_frames, overlap=args.overlap, anchor=args.anchor, loop=args.loop,
        crossfade=args.crossfade,
        condition_indices=job.indices, mask_type=MaskType(args.mask_type) if args.mask_type else None,
        height=args.height, width=args.width, crop_for_hw=args.crop_for_hw, max_hxw=args.max_hxw,
        on_frames=on_frames, on_segment=on_segment, negative_prompt=args.negative_prompt,
        num_inference_steps=steps, guidance_scale=args.guidance_scale, guidance_rescale=args.guidance_rescale,
        generator=generator, noise_strength=args.noise_strength, max_sequence_length=args.max_sequence_length)

"""Videos longer than the model's clip: a chain of overlapping segments, each continuing the last.

The model makes clips of ``F`` frames (its ``default_num_frames``: 93 for the release, 17 for the
demo). A video of ``N > F`` frames is cut into segments of at most ``F`` frames::

    segment 0    frames [0, F)                    the user's conditioning (image, keyframes, video)
    segment i    frames [n_i - P, n_i - P + F)    its first P frames given: the last P frames made so far;
                 new frames [n_i, ...)            n_i = F + (i - 1)·S, stride S = F - P

The overlap ``O`` is counted in latent frames, as the model sees time: the VAE's first latent frame
holds one pixel frame and every later one four, so ``P = 4·O - 3`` pixel frames. Each segment is an
ordinary continuation (one model, one mask mechanism), guided at the continuation default; the last
segment is shorter when ``N`` does not fall on the stride (it is still 4k + 1 frames and ends at
frame ``N - 1``).

Keyframes are placed on the long timeline: each goes to the segment whose new frames hold it, at its
own index there (a transition's last image at ``N - 1`` lands in the last segment). ``loop`` gives
the video's first frame as its last frame too, so the video ends where it starts.

Anchoring (``anchor``): every later segment also gets an appearance reference: the last keyframe
image before the segment, else the video's first frame. A model trained for it (``soraplan train
--continuation_anchor``; ``pipe.takes_reference_frame``) takes it as one extra latent frame before
the segment (the pipeline's ``reference``), the overlap and everything else as without anchoring.
Any other model gets it as the segment's frame 0, the frame it has always been given in training
(i2v and continuation start there); the overlap follows it (``P - 1`` frames, so ``O`` latent frames
of context either way), and the segment's length and stride stay as without anchoring. There the
jump in time between the anchor and the overlap is carried by WF-VAE's causal temporal layers into
the overlap's frames (a VAE round trip brings them back about 10 dB worse). By default (``anchor=None``)
anchoring is on for a model with the reference frame and off for any other: soraplan eval --long, which
measures both, found each better that way (README, "Long videos").

Crossfade (``crossfade``): a segment reproduces its given overlap frames only up to the model's and
the VAE's error (about 33 dB for the demo model), so the step from the last given frame to its first
new frame can be larger than an ordinary frame step (a seam). With crossfading, the overlap frames of
the output fade from the previous segment's version to the new segment's own, spreading that step
over the overlap. On by default: soraplan eval --long measured seams of 1.3 ordinary stretches of
video without it and 1.0 with it on the demo model (README); off, the overlap frames are exactly what
the next segment was given.

Memory stays flat in ``N``: one segment's latents and frames exist at a time; finished frames go to
``on_frames`` (e.g. an mp4 writer) and only the overlap (and the anchor) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..masks import MaskType
from .conditioning import default_indices, load_condition, to_common_resolution

DEFAULT_OVERLAP = 2  # latent frames: 5 pixel frames of context, one latent frame of motion beyond the first


def overlap_frames(overlap: int) -> int:
    """Pixel frames of ``overlap`` latent frames (the VAE's causal grouping: 1, then 4 each)."""
    return 4 * overlap - 3


@dataclass
class SegmentPlan:
    """One segment of a long video: where it lies, what it is given, what it is asked."""

    index: int
    start: int  # long-timeline index of the segment's first frame (its first overlap frame, i > 0)
    num_frames: int  # frames on the long timeline (4k + 1); an anchor comes on top
    overlap: int  # frames given from the video so far (0 for the first segment)
    prompt: str
    keyframes: dict[int, int] = field(default_factory=dict)  # segment index -> long-timeline keyframe index

    @property
    def new_start(self) -> int:
        """The first frame this segment adds to the video."""
        return self.start + self.overlap

    @property
    def end(self) -> int:
        return self.start + self.num_frames


@dataclass
class LongVideoPlan:
    num_frames: int
    segment_frames: int
    overlap: int  # latent frames
    anchor: bool
    loop: bool
    segments: list[SegmentPlan]


def parse_storyboard(value, num_frames: int | None) -> tuple[list[tuple[str, int]], int]:
    """A storyboard (a list of ``{"prompt": ..., "num_frames": ...}``) -> ([(prompt, frames)], total
    frames). The frame counts add up to the video's length (``num_frames``, when given, must agree)."""
    if not isinstance(value, list) or not value:
        raise ValueError("a storyboard is a non-empty JSON list of {\"prompt\": ..., \"num_frames\": ...}")
    parts = []
    for position, part in enumerate(value):
        if not isinstance(part, dict) or not isinstance(part.get("prompt"), str) or not isinstance(part.get("num_frames"), int) \
                or part["num_frames"] < 1:
            raise ValueError(f"storyboard part {position}: need a \"prompt\" (text) and \"num_frames\" (a positive "
                             f"integer), got {part!r}")
        parts.append((part["prompt"], part["num_frames"]))
    total = sum(frames for _, frames in parts)
    if num_frames is not None and num_frames != total:
        raise ValueError(f"the storyboard's frame counts add up to {total}, but num_frames is {num_frames}: "
                         "give one of them, or make them agree")
    return parts, total


def plan_long_video(num_frames: int, segment_frames: int, prompts: list[str] | list[tuple[str, int]],
                    keyframe_indices: list[int] = (), overlap: int = DEFAULT_OVERLAP, anchor: bool = False,
                    loop: bool = False, anchor_as_reference: bool = False) -> LongVideoPlan:
    """Cut ``num_frames`` into segments (see the module docstring).

    ``prompts``: one prompt for the whole video, one per segment, or storyboard parts ``(prompt,
    frames)`` (a segment takes the part that holds most of its new frames). ``keyframe_indices``: the
    long-timeline frames the user gives (a loop adds ``num_frames - 1``). ``anchor_as_reference``: the
    anchor comes as a reference frame before the segment, not in its frame 0 (then one overlap frame is
    enough)."""
    for name, value in (("num_frames", num_frames), ("segment frames", segment_frames)):
        if value < 1 or (value - 1) % 4:
            raise ValueError(f"{name} {value} is not 4k+1 (e.g. {max(1, (value - 1) // 4 * 4 + 1)} or "
                             f"{max(1, (value - 1) // 4 * 4 + 5)})")
    latent = (segment_frames - 1) // 4 + 1
    if num_frames > segment_frames and not 1 <= overlap < latent:
        raise ValueError(f"overlap {overlap} latent frames: it must be at least 1 and less than the segment's "
                         f"{latent} latent frames ({segment_frames} pixel frames)")
    if anchor and not anchor_as_reference and num_frames > segment_frames and overlap < 2:
        raise ValueError("anchoring in frame 0 (a model without a reference frame) needs an overlap of at least 2 "
                         "latent frames (the anchor takes the first): raise --overlap or drop --anchor")
    keyframes = sorted(set(keyframe_indices) | ({num_frames - 1} if loop else set()))
    for index in keyframes:
        if not 0 <= index < num_frames:
            raise ValueError(f"keyframe index {index} lies outside the {num_frames}-frame video (0 to {num_frames - 1})")

    given = overlap_frames(overlap) if num_frames > segment_frames else 0
    stride = segment_frames - given
    segments, start = [], 0
    while True:
        length = min(segment_frames, num_frames - start)
        segments.append(SegmentPlan(len(segments), start, length, 0 if not segments else given, ""))
        if start + length >= num_frames:
            break
        start += stride

    storyboard = bool(prompts) and isinstance(prompts[0], tuple)
    if storyboard:
        bounds, position = [], 0
        for text, frames in prompts:
            bounds.append((position, position + frames, text))
            position += frames
        for segment in segments:
            segment.prompt = max(bounds, key=lambda b: min(b[1], segment.end) - max(b[0], segment.new_start))[2]
    elif len(prompts) == 1:
        for segment in segments:
            segment.prompt = prompts[0]
    elif len(prompts) == len(segments):
        for segment, text in zip(segments, prompts):
            segment.prompt = text
    else:
        raise ValueError(f"{len(prompts)} prompts for a video of {len(segments)} segments ({num_frames} frames in "
                         f"segments of {segment_frames}, overlap {overlap}): give 1 prompt, {len(segments)} "
                         "separated by '|', or a storyboard with frame counts")
    for index in keyframes:
        owner = next(s for s in segments if s.new_start <= index < s.end)
        owner.keyframes[index - owner.start] = index
    return LongVideoPlan(num_frames, segment_frames, overlap, anchor and len(segments) > 1, loop, segments)


@dataclass
class LongVideoOutput:
    """``videos``: (1, N, H, W, 3) uint8 when no ``on_frames`` took the frames, else None;
    ``segments``: per segment its start, frames, prompt, mask type and guidance scale; ``anchor``: whether
    anchoring was asked for (``anchor=None`` resolved to the model's default)."""

    videos: np.ndarray | None
    segments: list[dict]
    height: int
    width: int
    anchor: bool = False


def user_keyframes(conditions: list, num_frames: int, indices: list[int] | None, mask_type,
                   height: int, width: int, crop_for_hw: bool, max_hxw: int):
    """The user's conditioning on the long timeline: ({frame index: uint8 (3, H, W)}, H, W, whether it
    was a video), at one common resolution (the rules of one clip). Images go to ``indices`` (default:
    as for one clip of ``num_frames``: i2v at 0, a transition's two at 0 and N - 1); a video's frames
    start the video."""
    mask_type = MaskType.parse(mask_type) if mask_type is not None else None
    loaded = [load_condition(c) for c in conditions]
    if not loaded:
        if mask_type not in (None, MaskType.t2iv):
            raise ValueError(f"mask_type {mask_type.value} needs conditioning images or a video")
        return {}, height, width, False
    is_video = any(c.shape[0] > 1 for c in loaded)
    if is_video:
        if len(loaded) > 1:
            raise ValueError("give either one video or images, not both")
        if mask_type not in (None, MaskType.continuation):
            raise ValueError(f"a long video continues a given video; mask_type {mask_type.value} does not apply")
        keyframes = dict(enumerate(to_common_resolution([loaded[0]], height, width, crop_for_hw, max_hxw)[0]))
    else:
        pixels = to_common_resolution(loaded, height, width, crop_for_hw, max_hxw)
        if indices is None:
            if mask_type is None:
                mask_type = {1: MaskType.i2v, 2: MaskType.transition}.get(len(pixels), MaskType.random_temporal)
            indices = default_indices(mask_type, len(pixels), num_frames)
        elif len(indices) != len(pixels):
            raise ValueError(f"{len(pixels)} images but {len(indices)} frame indices")
        indices = [i + num_frames if -num_frames <= i < 0 else i for i in indices]
        keyframes = {index: image[0] for index, image in zip(indices, pixels)}
    any_frame = next(iter(keyframes.values()))
    return keyframes, int(any_frame.shape[-2]), int(any_frame.shape[-1]), is_video


def resolve_anchor(pipe, anchor: bool | None) -> bool:
    """``anchor`` as asked, or for None the default: on for a model with the reference frame (measured
    better there), off for any other (the frame-0 layout measured worse)."""
    return pipe.takes_reference_frame if anchor is None else bool(anchor)


def generate_long_video(pipe, prompts, conditions: list | None = None, *, num_frames: int,
                        segment_frames: int | None = None, overlap: int = DEFAULT_OVERLAP, anchor: bool | None = None,
                        loop: bool = False, crossfade: bool = True, condition_indices: list[int] | None = None, mask_type=None,
                        height: int = 352, width: int = 640, crop_for_hw: bool = False, max_hxw: int = 236544,
                        on_frames: Callable[[np.ndarray], None] | None = None,
                        on_segment: Callable[[int, int], None] | None = None, **call_kwargs) -> LongVideoOutput:
    """A ``num_frames`` video from ``pipe`` (an OpenSoraInpaintPipeline) in segments of
    ``segment_frames`` (default: the pipeline's clip length, ``clip_frames``). ``prompts``: a prompt, a
    list (one per segment), or storyboard parts ``[(prompt, frames)]``. ``on_frames(frames)`` receives
    each new run of (T, H, W, 3) uint8 frames in order (nothing is collected then);
    ``on_segment(i, n)`` is called before segment i of n. ``call_kwargs`` go to every segment's
    pipeline call (steps, guidance, generator, negative prompt, ...). One video per call: every
    segment's conditioning is that video's own frames. ``anchor``: True / False, or None for the model's
    default (on for a model with the reference frame, off for any other)."""
    if call_kwargs.get("num_samples_per_prompt", 1) != 1:
        raise ValueError("a long video is made one at a time: num_samples_per_prompt must be 1")
    if not pipe.takes_conditioning:
        raise ValueError("long videos chain continuations: they need an I2V (inpaint) model, not a T2V one")
    segment_frames = segment_frames or pipe.clip_frames
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    keyframes, height, width, is_video = user_keyframes(conditions or [], num_frames, condition_indices, mask_type,
                                                        height, width, crop_for_hw, max_hxw)
    if is_video and len(keyframes) >= segment_frames:
        raise ValueError(f"the video to continue has {len(keyframes)} frames, a segment {segment_frames}: give "
                         f"its last frames (fewer than {segment_frames}) to continue from")
    if loop and num_frames - 1 in keyframes:
        raise ValueError(f"a loop ends on its first frame, but frame {num_frames - 1} is already given: drop the "
                         "loop or that keyframe")
    as_reference = pipe.takes_reference_frame  # anchors before the clip, as the model was trained
    anchor = resolve_anchor(pipe, anchor)
    plan = plan_long_video(num_frames, segment_frames, prompts, list(keyframes), overlap, anchor, loop, as_reference)
    if loop and 0 not in keyframes and plan.segments[0].keyframes.get(num_frames - 1) is not None:
        raise ValueError("a one-segment loop needs its first frame given (an image): make the video longer than "
                         "one segment, or give the first frame")

    collected = [] if on_frames is None else None
    emit = on_frames if on_frames is not None else collected.append
    context = overlap_frames(plan.overlap)
    tail = None  # (<= P, H, W, 3): the last frames of the video so far, held back: the next segment's overlap
    first = _hwc(keyframes[0]) if 0 in keyframes else None  # the video's first frame (a loop's last)
    records = []
    for segment in plan.segments:
        if on_segment is not None:
            on_segment(segment.index, len(plan.segments))
        # a segment's frame j is the long timeline's start + j; with an anchor in frame 0 (a model without
        # a reference frame), frame 0 is the anchor instead of the first overlap frame
        images, indices, reference = [], [], None
        anchored = plan.anchor and segment.overlap > 0
        in_frame = anchored and not as_reference  # the anchor takes the overlap's first frame
        if segment.overlap:
            if anchored:
                earlier = [i for i in keyframes if i < segment.new_start and not is_video]
                anchor_image = _hwc(keyframes[max(earlier)]) if earlier else first
                if as_reference:
                    reference = anchor_image
                else:
                    images.append(anchor_image)
            given = tail[-segment.overlap:]
            images += list(given[1:] if in_frame else given)
            indices += list(range(segment.overlap))
        for local, index in sorted(segment.keyframes.items()):
            images.append(_hwc(keyframes[index]) if index in keyframes else first)  # else: the loop's end
            indices.append(local)
        extra = {"reference": reference} if reference is not None else {}
        result = pipe(segment.prompt, conditions=images or None, condition_indices=indices or None,
                      num_frames=segment.num_frames, height=height, width=width, crop_for_hw=True, **extra,
                      **call_kwargs)
        video = result.videos[0]  # (T, H, W, 3)
        if first is None:
            first = video[0].copy()
        if crossfade and segment.overlap:  # the overlap fades from the given frames to this segment's own
            # (with the anchor in frame 0, the segment's frame 0 is its version of the anchor, not of the
            # overlap's first frame: that frame keeps the previous segment's version, the fade runs over the rest)
            fading = segment.overlap - 1 if in_frame else segment.overlap
            weight = np.arange(1, fading + 1, dtype=np.float32)[:, None, None, None] / (fading + 1)
            faded = (1 - weight) * tail[-fading:] + weight * video[segment.overlap - fading:segment.overlap]
            tail = np.concatenate([tail[:-fading], np.round(faded).astype(np.uint8)])
        made = video[segment.overlap:] if tail is None else np.concatenate([tail, video[segment.overlap:]])
        if len(made) > context:
            emit(np.ascontiguousarray(made[:-context]))
        tail = made[-context:].copy()
        records.append({"segment": segment.index, "start": segment.start, "num_frames": segment.num_frames,
                        "overlap": segment.overlap, "anchored": anchored,
                        "anchor_layout": ("reference frame" if as_reference else "frame 0") if anchored else None,
                        "crossfade": crossfade and segment.overlap > 0,
                        "prompt": segment.prompt,
                        "mask_type": result.mask_type.value, "guidance_scale": result.guidance_scale,
                        "keyframes": sorted(segment.keyframes.values())})
    emit(np.ascontiguousarray(tail))  # the last frames, held back for a next segment that never came
    videos = np.concatenate(collected)[None] if collected is not None else None
    return LongVideoOutput(videos, records, height, width, anchor)


def _hwc(frame: torch.Tensor) -> np.ndarray:
    """uint8 (3, H, W) tensor -> (H, W, 3) array, as the pipeline takes images."""
    return frame.permute(1, 2, 0).contiguous().numpy()

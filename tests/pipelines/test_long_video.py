"""Long videos (soraplan.pipelines.long_video): the segment plan, the chain on a tiny real pipeline, its
handoff between segments, flat memory, loops on the demo model, and the errors users hit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from soraplan.pipelines.long_video import generate_long_video, overlap_frames, plan_long_video

from ..conftest import build_tiny_pipeline


@pytest.mark.parametrize("num_frames,segment,overlap", [(65, 17, 2), (49, 17, 2), (45, 17, 1), (93, 29, 3),
                                                         (17, 17, 2), (9, 17, 2), (25, 9, 2)])
def test_segments_tile_the_video_with_the_overlap(num_frames, segment, overlap):
    plan = plan_long_video(num_frames, segment, ["p"], overlap=overlap)
    segments = plan.segments
    assert segments[0].start == 0 and segments[0].overlap == 0 and segments[-1].end == num_frames
    for before, after in zip(segments, segments[1:]):
        assert after.start == before.end - overlap_frames(overlap) and after.overlap == overlap_frames(overlap)
    for part in segments:
        assert part.num_frames <= segment and (part.num_frames - 1) % 4 == 0 and part.num_frames > part.overlap
    assert sum(part.num_frames - part.overlap for part in segments) == num_frames  # every frame made once


def test_keyframes_go_to_the_segment_that_makes_them_and_prompts_follow_the_storyboard():
    plan = plan_long_video(65, 17, [("walk", 30), ("run", 35)], keyframe_indices=[0, 20, 64])
    assert [s.start for s in plan.segments] == [0, 12, 24, 36, 48]
    assert plan.segments[0].keyframes == {0: 0}
    assert plan.segments[1].keyframes == {8: 20}  # made by segment 1 (frames 17-28), its frame 8
    assert plan.segments[4].keyframes == {16: 64}  # a transition's last image: the last segment's last frame
    # each segment takes the part holding most of its new frames (segment 2 makes 29-40: 29 walk, 30-40 run)
    assert [s.prompt for s in plan.segments] == ["walk", "walk", "run", "run", "run"]
    assert plan_long_video(33, 17, ["p"], loop=True).segments[-1].keyframes == {8: 32}


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_frames=64), "num_frames 64 is not 4k\\+1"),
    (dict(segment_frames=16), "segment frames 16 is not 4k\\+1"),
    (dict(overlap=5), "less than the segment's 5 latent frames"),
    (dict(overlap=0), "at least 1"),
    (dict(keyframe_indices=[65]), "keyframe index 65 lies outside the 65-frame video"),
    (dict(prompts=["a", "b"]), "2 prompts for a video of 5 segments"),
    (dict(anchor=True, overlap=1), "anchoring in frame 0 .* needs an overlap of at least 2"),
])
def test_bad_plans_say_what_is_wrong(kwargs, message):
    arguments = {**dict(num_frames=65, segment_frames=17, prompts=["p"]), **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_long_video(**arguments)


def test_a_reference_frame_anchor_needs_no_second_overlap_frame():
    plan = plan_long_video(65, 17, ["p"], overlap=1, anchor=True, anchor_as_reference=True)
    assert plan.anchor and [(s.start, s.overlap) for s in plan.segments] == [(0, 0), (16, 1), (32, 1), (48, 1)]


@pytest.fixture(scope="module")
def tiny():
    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_long(pipe, calls=None, **kwargs):
    """generate_long_video on the tiny pipeline (segments of 9 frames), recording each segment's call."""
    original = type(pipe).__call__

    def spy(self, *args, **call):
        result = original(self, *args, **call)
        if calls is not None:
            calls.append({**call, "made": result.videos[0]})
        return result

    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    type(pipe).__call__ = spy
    try:
        arguments = dict(conditions=[image], segment_frames=9, num_inference_steps=2, max_sequence_length=32,
                         generator=torch.Generator().manual_seed(0), height=32, width=32)
        return generate_long_video(pipe, "clip 1", **{**arguments, **kwargs}), image
    finally:
        type(pipe).__call__ = original


@pytest.mark.parametrize("anchor", [False, True])
def test_each_segment_is_given_the_frames_the_video_already_has(tiny, anchor):
    calls = []
    out, image = run_long(tiny, calls, num_frames=25, anchor=anchor, crossfade=False)
    video = out.videos[0]
    assert video.shape == (25, 32, 32, 3)
    assert len(calls) == len(out.segments) == 5
    np.testing.assert_array_equal(calls[0]["conditions"][0], image)
    for call, segment in zip(calls[1:], out.segments[1:]):
        given = dict(zip(call["condition_indices"], call["conditions"]))
        assert sorted(given) == list(range(5)) and call["num_frames"] == 9
        for local in range(1 if anchor else 0, 5):  # the overlap: the frames already in the video
            np.testing.assert_array_equal(given[local], video[segment["start"] + local])
        if anchor:  # the video's first frame, the user's image
            np.testing.assert_array_equal(given[0], image)
        assert segment["mask_type"] == "continuation" and segment["anchored"] == anchor


@pytest.mark.parametrize("anchor", [False, True])
def test_crossfade_fades_each_overlap_from_the_given_frames_to_the_segments_own(tiny, anchor):
    """The overlap's frames blend the previous segment's version into the new segment's own; anchored,
    the new segment's frame 0 is its version of the anchor (the first frame), which must not bleed into
    the overlap's first frame: that one stays as it was, and the fade runs over the other four."""
    calls = []
    out, image = run_long(tiny, calls, num_frames=25, crossfade=True, anchor=anchor)
    before, _ = run_long(tiny, num_frames=25, anchor=anchor, crossfade=False)  # the same chain, no fading
    video = out.videos[0].astype(np.float32)
    assert video.shape[0] == 25 and all(s["crossfade"] for s in out.segments[1:])
    skip = 1 if anchor else 0
    weight = np.arange(1, 6 - skip, dtype=np.float32)[:, None, None, None] / (6 - skip)
    for call, segment in zip(calls[1:], out.segments[1:]):
        start = segment["start"]
        previous = video[start:start + 5].copy()
        previous[skip:] = np.stack([image for index, image in zip(call["condition_indices"], call["conditions"])
                                    if index >= skip])  # what this segment was given (the anchor aside)
        faded = previous.copy()
        faded[skip:] = np.round((1 - weight) * previous[skip:] + weight * call["made"][skip:5].astype(np.float32))
        if anchor:
            assert np.array_equal(call["conditions"][0], image)  # given the user's first frame, not faded in
        if segment is out.segments[-1]:  # (earlier ones' later frames are faded again by the next overlap)
            np.testing.assert_array_equal(video[start:start + 5], faded)
            np.testing.assert_array_equal(video[start + 5:], call["made"][5:])  # its own frames
        else:  # frame start + 4 is the next segment's first overlap frame
            np.testing.assert_array_equal(video[start:start + 4], faded[:4])
    if anchor:  # the second segment's first overlap frame is still the first segment's own
        start = out.segments[1]["start"]
        np.testing.assert_array_equal(video[start], calls[0]["made"][start])
    assert not np.array_equal(out.videos, before.videos)


def test_a_model_trained_with_a_reference_frame_gets_the_anchor_before_each_segment():
    """With a reference-frame model (soraplan train --continuation_anchor) an anchored segment is
    given the whole overlap, as without anchoring, and the first frame as its reference (one latent
    frame before the segment): the overlap frames are exactly what the next segment was given."""
    pipe = build_tiny_pipeline(seed=2)
    pipe.set_progress_bar_config(disable=True)
    pipe.transformer.register_to_config(reference_frame=True)
    calls, frames_seen = [], []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args: frames_seen.append(args[0].shape[2]))
    try:
        out, image = run_long(pipe, calls, num_frames=25, anchor=True, crossfade=False)
        unanchored, _ = run_long(pipe, num_frames=25, anchor=False, crossfade=False)
    finally:
        handle.remove()
    defaulted, _ = run_long(pipe, num_frames=25, crossfade=False)  # anchoring is this model's default
    assert defaulted.anchor and out.anchor and not unanchored.anchor
    np.testing.assert_array_equal(defaulted.videos, out.videos)
    video = out.videos[0]
    assert video.shape == (25, 32, 32, 3) and "reference" not in calls[0]
    for call, segment in zip(calls[1:], out.segments[1:]):
        given = dict(zip(call["condition_indices"], call["conditions"]))
        assert sorted(given) == list(range(5))
        for local in range(5):
            np.testing.assert_array_equal(given[local], video[segment["start"] + local])
        np.testing.assert_array_equal(call["reference"], image)
        assert segment["anchored"] and segment["anchor_layout"] == "reference frame"
    assert set(frames_seen[:2]) == {3} and set(frames_seen[2:len(calls) * 2]) == {4}  # 9 frames: 3 latent, + 1
    np.testing.assert_array_equal(video[:9], unanchored.videos[0][:9])  # the first segment has no anchor
    assert not np.array_equal(video, unanchored.videos[0])


def test_same_seed_same_long_video_and_keyframes_on_the_long_timeline(tiny):
    other = np.random.default_rng(5).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    calls = []
    first, image = run_long(tiny, calls, num_frames=25)
    again, _ = run_long(tiny, num_frames=25)
    np.testing.assert_array_equal(first.videos, again.videos)
    keyed, _ = run_long(tiny, calls := [], num_frames=25,
                        conditions=[np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8), other],
                        condition_indices=[0, 14])
    # frame 14 is made by segment 2 (frames 8-16, new from 13): its frame 6
    given = dict(zip(calls[2]["condition_indices"], calls[2]["conditions"]))
    assert sorted(given) == [0, 1, 2, 3, 4, 6]
    np.testing.assert_array_equal(given[6], other)
    assert keyed.segments[2]["mask_type"] == "random_temporal" and keyed.segments[2]["keyframes"] == [14]


def test_memory_stays_flat_in_the_length(tiny):
    """Peak traced memory (numpy frames, the chain's own state) for 33 and 129 frames at 64x64 with the
    frames streamed away; collecting them instead grows by the whole video (the measure can tell)."""
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)

    def peak(num_frames, stream=True):
        tracemalloc.start()
        generate_long_video(tiny, "clip 1", [image], num_frames=num_frames, segment_frames=9, num_inference_steps=1,
                            max_sequence_length=32, generator=torch.Generator().manual_seed(0),
                            on_frames=(lambda frames: None) if stream else None)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    short, long = peak(33), peak(129)
    assert long < 1.2 * short + 64 * 1024, (short, long)
    collected = peak(129, stream=False)
    assert collected > long + 96 * 64 * 64 * 3 * 0.9, (long, collected)  # 96 more frames of 12 KiB


def test_long_video_errors_are_clear(tiny):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="already given"):
        run_long(tiny, num_frames=25, loop=True, conditions=[image, image], condition_indices=[0, 24])
    with pytest.raises(ValueError, match="one at a time"):
        run_long(tiny, num_frames=25, num_samples_per_prompt=2)
    with pytest.raises(ValueError, match="keyframe index 30 lies outside"):
        run_long(tiny, num_frames=25, conditions=[image, image], condition_indices=[0, 30])
    video = np.zeros((9, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="the video to continue has 9 frames"):
        run_long(tiny, num_frames=25, conditions=[video])


@pytest.mark.slow
def test_a_loop_on_the_demo_model_turns_back_to_its_first_frame():
    """The embedded model, 33 frames in three segments: with --loop the last frame comes back towards the
    first (the last segment is given it as its last frame), clearly more than without. The demo world's
    shapes only ever move one way, so the model meets the given frame only part of the way there
    (about 21 dB against 16 without the loop, where a transition's last frame reaches 28)."""
    from PIL import Image

    from soraplan.demo.assets import demo_pipeline_path
    from soraplan.pipelines import load_pipeline

    pipe = load_pipeline(str(demo_pipeline_path()))
    pipe.set_progress_bar_config(disable=True)
    image = np.array(Image.open(demo_pipeline_path().parent / "examples" / "i2v_first.png").convert("RGB"))

    def run(loop):
        return generate_long_video(pipe, "a red triangle moves to the left on a black background", [image],
                                   num_frames=33, loop=loop, num_inference_steps=30, height=64, width=64,
                                   generator=torch.Generator().manual_seed(0))

    def psnr(a, b):
        return 10 * np.log10(255 ** 2 / max(np.mean((a.astype(float) - b.astype(float)) ** 2), 1e-9))

    looped, straight = run(True), run(False)
    assert [s["num_frames"] for s in looped.segments] == [17, 17, 9] and looped.segments[-1]["keyframes"] == [32]
    meets = psnr(looped.videos[0, -1], image)
    assert meets > psnr(straight.videos[0, -1], image) + 3 and meets > psnr(looped.videos[0, 16], image) + 3

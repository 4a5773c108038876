"""The web app's request checking: every user mistake is one clear sentence, before any work starts."""

from __future__ import annotations

import pytest

from soraplan.ui.requests import Request, RequestError, pipeline_arguments

from ..conftest import make_videos, write_image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui_requests")
    write_image(root / "a.png", 64, 64, seed=1)
    write_image(root / "b.png", 64, 64, seed=2)
    (root / "notes.png").write_text("this is text, not a picture")
    (root / "notes.mp4").write_text("not a video either")
    make_videos(root / "videos", 1, frames=9, size=64)
    return root


def test_inputs_map_to_the_task(files):
    a, b = str(files / "a.png"), str(files / "b.png")
    assert pipeline_arguments(Request("p", first_frame=a))["conditions"] == [a]
    transition = pipeline_arguments(Request("p", first_frame=a, last_frame=b))
    assert transition["conditions"] == [a, b] and transition["condition_indices"] is None
    assert pipeline_arguments(Request("p", last_frame=b))["condition_indices"] == [-1]
    keyframes = pipeline_arguments(Request("p", keyframes=[a, b, a], keyframe_positions="0, 8,-1"))
    assert keyframes["condition_indices"] == [0, 8, -1]
    video = str(files / "videos" / "clip000.mp4")
    assert pipeline_arguments(Request("p", video=video))["conditions"] == [video]
    t2v = pipeline_arguments(Request("p", mask_type="auto"))
    assert t2v["conditions"] is None and t2v["mask_type"] is None
    fixed = pipeline_arguments(Request("p", resolution_mode="keep aspect ratio: largest size within max area"))
    assert fixed["crop_for_hw"] is False


@pytest.mark.parametrize("request_fields,message", [
    (dict(prompt="  "), "write a prompt"),
    (dict(num_frames=10), r"frames must be 4k\+1"),
    (dict(first_frame="NOTES_PNG"), "is not an image"),
    (dict(video="NOTES_MP4"), "cannot be decoded as video"),
    (dict(video="A_PNG"), "is not a video file"),
    (dict(keyframes=["A_PNG", "A_PNG"], keyframe_positions="0"), "2 keyframes but 1 positions"),
    (dict(keyframes=["A_PNG"], keyframe_positions="zero"), "comma-separated frame numbers"),
    (dict(first_frame="A_PNG", video="VIDEO"), "give one kind of conditioning"),
    (dict(mask_type="v2v"), "unknown mask type"),
    (dict(steps=0), "steps must lie in"),
    (dict(first_frame="MISSING"), "upload is missing"),
])
def test_user_mistakes_are_one_sentence(files, request_fields, message):
    stand_ins = {"NOTES_PNG": files / "notes.png", "NOTES_MP4": files / "notes.mp4", "A_PNG": files / "a.png",
                 "VIDEO": files / "videos" / "clip000.mp4", "MISSING": files / "gone.png"}
    fields = {"prompt": "a red circle", **request_fields}
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = [str(stand_ins.get(v, v)) for v in value]
        elif isinstance(value, str) and value in stand_ins:
            fields[key] = str(stand_ins[value])
    with pytest.raises(RequestError, match=message) as caught:
        pipeline_arguments(Request(**fields))
    assert "\n" not in str(caught.value)

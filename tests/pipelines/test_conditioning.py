"""Conditioning frames: resolution rules of the reference, frame placement and mask types."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soraplan.masks import MaskType
from soraplan.data.transforms import center_crop_resize
from soraplan.pipelines.conditioning import build_conditioning, to_common_resolution

from ..conftest import make_videos


def blank(height, width, value=128):
    return torch.full((1, 3, height, width), value, dtype=torch.uint8)


@pytest.mark.parametrize(
    "size,expected",
    [((720, 1280), (352, 640)), ((1080, 1920), (352, 640)), ((512, 512), (480, 480)), ((480, 640), (416, 544)),
     ((300, 400), (288, 384))],
)
def test_arbitrary_resolution_matches_the_reference_examples(size, expected):
    (out,) = to_common_resolution([blank(*size)], 0, 0, crop_for_hw=False, max_hxw=236544)
    assert tuple(out.shape[-2:]) == expected


def test_arbitrary_resolution_uses_the_smallest_input():
    outs = to_common_resolution([blank(720, 1280), blank(300, 400)], 0, 0, crop_for_hw=False, max_hxw=236544)
    assert all(tuple(o.shape[-2:]) == (288, 384) for o in outs)


def test_fixed_resolution_crops_to_the_aspect_ratio():
    image = torch.zeros(1, 3, 100, 300, dtype=torch.uint8)
    image[..., 100:200] = 255  # the middle third
    out = center_crop_resize(image, 64, 64)
    assert out.shape == (1, 3, 64, 64) and out.float().mean() > 250


def test_default_mask_types_and_placement():
    one = build_conditioning([np.full((64, 64, 3), 200, np.uint8)], 9, 0, 0)
    assert one.mask_type is MaskType.i2v and one.mask.tolist() == [0] + [1] * 8
    assert torch.allclose(one.video[:, 0], torch.full_like(one.video[:, 0], 200 / 255 * 2 - 1))
    assert (one.video[:, 1:] == -1).all()
    two = build_conditioning([blank(64, 64).numpy()[0].transpose(1, 2, 0)] * 2, 9, 0, 0)
    assert two.mask_type is MaskType.transition and two.mask.tolist() == [0] + [1] * 7 + [0]
    keys = build_conditioning([blank(64, 64, v)[0].permute(1, 2, 0).numpy() for v in (10, 20, 30)], 13, 0, 0,
                              indices=[0, 6, -1])
    assert keys.mask_type is MaskType.random_temporal
    assert (keys.mask == 0).nonzero().flatten().tolist() == [0, 6, 12]
    t2v = build_conditioning([], 9, 32, 48)
    assert t2v.mask_type is MaskType.t2iv and t2v.video.shape == (3, 9, 32, 48) and t2v.mask.min() == 1


def test_video_continuation_and_explicit_types(tmp_path):
    (path,) = make_videos(tmp_path, 1, frames=12, size=64)
    cont = build_conditioning([path], 9, 0, 0)
    assert cont.mask_type is MaskType.continuation and int((cont.mask == 0).sum()) in (4, 5)
    i2v = build_conditioning([path], 9, 0, 0, mask_type="i2v")
    assert i2v.mask.tolist() == [0] + [1] * 8
    clear = build_conditioning([path], 9, 0, 0, mask_type="clear")
    assert clear.mask.max() == 0
    prefix = build_conditioning([blank(64, 64)[0].permute(1, 2, 0).numpy()] * 3, 9, 0, 0, mask_type="continuation")
    assert prefix.mask.tolist() == [0, 0, 0] + [1] * 6


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(conditions=["missing.png"]), "does not exist"),
        (dict(conditions=[np.zeros((64, 64, 3), np.uint8)] * 3), "pass their frame indices"),
        (dict(conditions=[np.zeros((64, 64, 3), np.uint8)], mask_type="t2iv"), "give no conditioning images"),
        (dict(conditions=[np.zeros((64, 64, 3), np.uint8)] * 2, indices=[0]), "2 images but 1 frame indices"),
        (dict(conditions=[np.zeros((64, 64, 3), np.uint8)], indices=[9]), "outside a 9-frame video"),
        (dict(conditions=[np.zeros((64, 64, 3), np.float32)]), "uint8"),
        (dict(conditions=[np.zeros((20, 20, 3), np.uint8)]), "smaller than 32x32"),
        (dict(conditions=[], mask_type="i2v"), "needs conditioning images"),
    ],
)
def test_bad_conditioning(kwargs, message):
    conditions = kwargs.pop("conditions")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_conditioning(conditions, 9, 0, 0, **kwargs)


def test_a_short_video_is_continued_and_a_text_file_rejected(tmp_path):
    (path,) = make_videos(tmp_path, 1, frames=5, size=64)
    conditioning = build_conditioning([path], 9, 0, 0)
    assert conditioning.mask_type is MaskType.continuation
    assert conditioning.mask.tolist() == [0] * 5 + [1] * 4  # its 5 frames given, 4 generated
    with pytest.raises(ValueError, match="has 5 frames; 9 are needed for mask_type clear"):
        build_conditioning([path], 9, 0, 0, mask_type="clear")
    note = tmp_path / "note.txt"
    note.write_text("hi")
    with pytest.raises(ValueError, match="not an image"):
        build_conditioning([note], 9, 0, 0)

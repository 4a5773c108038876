"""Caption processing: aesthetic notices and clean-up, as the dataset applies them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from soraplan.data.annotations import Sample
from soraplan.data.captions import AESTHETIC_NOTICES, add_aesthetic_notice, clean_caption
from soraplan.data.video_dataset import VideoTextDataset


@pytest.mark.parametrize("score,level", [(3.0, "low"), (4.25, "low"), (5.75, "high"), (7.2, "high")])
def test_aesthetic_notice_before_or_after_by_score(score, level):
    rng = random.Random(0)
    placements = set()
    for _ in range(40):
        text = add_aesthetic_notice("a cat sleeps", score, True, rng)
        notice = text.replace("a cat sleeps", "").strip()
        assert notice in AESTHETIC_NOTICES[("video", level)]
        placements.add(text.startswith("a cat sleeps"))
    assert placements == {True, False}


@pytest.mark.parametrize("score", [None, 4.26, 5.0, 5.74])
def test_middle_or_missing_scores_keep_the_caption(score):
    assert add_aesthetic_notice("a cat sleeps", score, False, random.Random(0)) == "a cat sleeps"


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("A <b>Red</b> Circle &amp; a “Blue” Square", "a red circle & a blue square"),
        ("Sunset over the sea — see https://example.com/x?y=1 by @photo_guy!!!", "sunset over the sea - see by!"),
        ("Cat%20on   a mat [HD] (1080p)...", "cat on a mat hd 1080p."),
        ("It’s a ‘quiet’ morning", "it's a 'quiet' morning"),
    ],
)
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


def test_clean_caption_keeps_chinese_only_for_multilingual_encoders():
    assert clean_caption("一只猫 sleeps") == "sleeps"
    assert clean_caption("一只猫 sleeps", keep_chinese=True) == "一只猫 sleeps"
    assert clean_caption("㇀㈠ stroke", keep_chinese=True) == "stroke"  # stroke/enclosed blocks always go


def sample(is_video: bool, aesthetic=None) -> Sample:
    return Sample(Path("x.mp4"), ["A <i>Dog</i> Runs"], is_video, [0], 32, 32, aesthetic=aesthetic)


def test_dataset_cleans_image_captions_and_optionally_video_ones():
    rng = random.Random(0)
    assert VideoTextDataset([], cfg=0.0).caption(sample(False), rng) == "a dog runs"
    assert VideoTextDataset([], cfg=0.0).caption(sample(True), rng) == "A <i>Dog</i> Runs"  # the reference's rule
    assert VideoTextDataset([], cfg=0.0, clean_video_captions=True).caption(sample(True), rng) == "a dog runs"
    text = VideoTextDataset([], cfg=0.0).caption(sample(True, aesthetic=6.5), rng)
    assert "A <i>Dog</i> Runs" in text and text != "A <i>Dog</i> Runs"


def test_train_flag_reaches_the_config():
    from soraplan.cli.dataclass_args import dataclass_from_args
    from soraplan.cli.main import build_parser
    from soraplan.training.i2v_trainer import TrainConfig

    base = ["train", "--data", "d.txt", "--output_dir", "o", "--model", "m", "--ae_path", "a",
            "--text_encoder_name_1", "t"]
    assert not dataclass_from_args(TrainConfig, build_parser().parse_args(base)).clean_video_captions
    args = build_parser().parse_args(base + ["--clean_video_captions"])
    assert dataclass_from_args(TrainConfig, args).clean_video_captions

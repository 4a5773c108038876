"""Conditioning masks: the six types, compression to latent channels, ratio configs, condition noise."""

from __future__ import annotations

import random

import pytest
import torch

from soraplan.masks import (
    MaskType,
    add_condition_noise,
    compress_mask,
    mask_from_indices,
    mask_video,
    normalize_mask_ratios,
    sample_mask_type,
    temporal_mask,
)


def test_fixed_mask_types():
    assert temporal_mask("t2iv", 9).tolist() == [1] * 9
    assert temporal_mask("i2v", 9).tolist() == [0] + [1] * 8
    assert temporal_mask("transition", 9).tolist() == [0] + [1] * 7 + [0]
    assert temporal_mask("clear", 9).tolist() == [0] * 9


def test_random_mask_types_respect_clear_ratios():
    rng = random.Random(0)
    for _ in range(50):
        cont = temporal_mask("continuation", 93, 0.5, 0.5, rng)
        given = int((cont == 0).sum())
        assert given in (46, 47) and cont[:given].sum() == 0
        rand = temporal_mask("random_temporal", 20, 0.2, 0.4, rng)
        assert 4 <= int((rand == 0).sum()) <= 8
    with pytest.raises(ValueError, match="min_clear_ratio"):
        temporal_mask("continuation", 9, 0.8, 0.2)
    with pytest.raises(ValueError, match="unknown mask type 'v2v'"):
        temporal_mask("v2v", 9)


def test_compress_mask_channel_layout():
    mask = mask_from_indices(93, [0, -1])[None]  # transition
    latent = compress_mask(mask, 16, 24)
    assert latent.shape == (1, 4, 24, 2, 3)
    assert latent[0, :, 0, 0, 0].tolist() == [0, 0, 0, 0]
    assert latent[0, :, 23, 0, 0].tolist() == [1, 1, 1, 0]  # pixel frames 89..92, the last given
    assert latent[0, :, 1:23].min() == 1
    frame_ids = torch.arange(9, dtype=torch.float32)[None]  # channel c of latent frame j = frame 4(j-1)+1+c
    assert compress_mask(frame_ids, 8, 8)[0, :, 2, 0, 0].tolist() == [5, 6, 7, 8]


def test_mask_video_sets_generated_frames_to_minus_one():
    video = torch.rand(1, 3, 5, 4, 4)
    masked = mask_video(video, torch.tensor([0.0, 1, 1, 1, 0]))
    assert torch.equal(masked[:, :, 0], video[:, :, 0]) and torch.equal(masked[:, :, 4], video[:, :, 4])
    assert (masked[:, :, 1:4] == -1).all()


def test_ratio_configs():
    probs = normalize_mask_ratios({"t2iv": 1, "i2v": 8, "transition": 8, "continuation": 2, "clear": 0,
                                   "random_temporal": 1})
    assert probs[MaskType.i2v] == pytest.approx(0.4) and MaskType.clear not in probs
    counts = {t: 0 for t in probs}
    rng = random.Random(0)
    for _ in range(2000):
        counts[sample_mask_type(probs, rng)] += 1
    assert counts[MaskType.i2v] / 2000 == pytest.approx(0.4, abs=0.04)
    for bad, message in [({"t2iv": 0, "clear": 0}, "all zero"), ({"i2v": -1}, "non-negative"),
                         ({"random_spatial": 1}, "unknown mask type"), ({}, "empty")]:
        with pytest.raises(ValueError, match=message):
            normalize_mask_ratios(bad)


def test_condition_noise_only_on_given_frames():
    video = torch.zeros(2, 3, 5, 4, 4)
    mask = torch.tensor([0.0, 1, 1, 1, 1])
    noisy = add_condition_noise(video, mask, log_sigma_mean=float(torch.log(torch.tensor(0.5))),
                                generator=torch.Generator().manual_seed(0))
    assert (noisy[:, :, 1:] == 0).all()
    assert noisy[:, :, 0].std() == pytest.approx(0.5, rel=0.2)

"""Skiparse as token regrouping equals dense attention under the equivalent block mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from soraplan.models.attention import (
    MASKED_KEY_BIAS,
    dense_attention,
    self_attention_bias,
    skiparse_attention,
)
from soraplan.models.skiparse import (
    group_to_single_order,
    skiparse_group,
    skiparse_pad_len,
    skiparse_subsequence_ids,
    skiparse_ungroup,
)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_group_ungroup_round_trip_and_membership(ratio, grouped):
    seq = 5 * ratio * ratio
    positions = torch.arange(seq).repeat(2, 1)  # (B, S)
    grouped_positions = skiparse_group(positions, ratio, grouped)  # (B·k, S/k)
    assert torch.equal(skiparse_ungroup(grouped_positions, ratio, grouped), positions)
    ids = skiparse_subsequence_ids(seq, ratio, grouped)
    for row in grouped_positions:
        assert len(set(ids[row].tolist())) == 1  # one sub-sequence per batch row
        assert torch.all(row[1:] > row[:-1])  # order kept inside it


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_group_skip_is_single_skip_after_reordering(ratio):
    seq = 3 * ratio * ratio
    positions = torch.arange(seq).repeat(2, 1)  # (B, S)
    reordered = group_to_single_order(positions, ratio)
    assert torch.equal(group_to_single_order(reordered, ratio), positions)  # its own inverse
    group_ids = skiparse_subsequence_ids(seq, ratio, grouped=True)
    single_ids = skiparse_subsequence_ids(seq, ratio, grouped=False)
    assert torch.equal(group_ids[reordered[0]], single_ids)  # sub-sequence m lands on slots p' mod k = m
    for m in range(ratio):
        assert torch.all(reordered[0][single_ids == m].diff() > 0)  # in their original order


def block_masked_attention(q, k, v, keep, ratio, grouped):
    """Dense attention over the unpadded sequence, allowed iff query and key share a sub-sequence."""
    ids = skiparse_subsequence_ids(q.shape[1], ratio, grouped)
    same_group = ids[:, None] == ids[None, :]  # (S, S)
    bias = torch.where(same_group, 0.0, float("-inf"))[None, None]
    if keep is not None:
        bias = bias + (~keep).float()[:, None, None, :] * MASKED_KEY_BIAS
    return dense_attention(q, k, v, bias)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("ratio,seq", [(4, 45), (4, 64), (4, 120), (2, 13), (3, 50), (5, 77)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_skiparse_equals_block_mask(ratio, seq, grouped, with_mask):
    batch, heads, dim = 2, 3, 8
    q, k, v = (torch.randn(batch, seq, heads, dim) for _ in range(3))
    keep = None
    if with_mask:
        keep = torch.rand(batch, seq) > 0.3
        keep[:, :ratio * ratio] = True  # every sub-sequence keeps at least one key
    bias = self_attention_bias(keep, batch, seq, ratio, grouped, torch.float32, torch.device("cpu"))
    ours = skiparse_attention(q, k, v, bias, ratio, grouped)
    expected = block_masked_attention(q, k, v, keep, ratio, grouped)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)


def test_padding_keys_get_no_weight():
    """Padded keys are zero vectors with a large negative bias: valid rows must ignore them entirely."""
    seq, ratio = 45, 4
    q, k, v = (torch.randn(1, seq, 2, 8) for _ in range(3))
    bias = self_attention_bias(None, 1, seq, ratio, False, torch.float32, torch.device("cpu"))
    assert bias.shape == (4, 1, 1, (seq + skiparse_pad_len(seq, ratio)) // ratio)
    ours = skiparse_attention(q, k, v, bias, ratio, False)
    # with the padding made explicit and given huge values, the valid rows do not change
    padded = [F.pad(t, (0, 0, 0, 0, 0, 3), value=1e3) for t in (q, k, v)]
    grouped = [skiparse_group(t, ratio, False) for t in padded]
    alt = skiparse_ungroup(dense_attention(*grouped, bias), ratio, False)[:, :seq]
    torch.testing.assert_close(ours, alt)


def test_dense_layer_without_mask_has_no_bias():
    assert self_attention_bias(None, 2, 45, 1, False, torch.float32, torch.device("cpu")) is None
    assert self_attention_bias(None, 2, 64, 4, True, torch.float32, torch.device("cpu")) is None

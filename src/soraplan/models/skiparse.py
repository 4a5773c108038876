"""Skiparse: sparse self-attention as a regrouping of tokens.

A Skiparse layer with ratio k splits the (padded) token sequence into k sub-sequences and attends
inside each one. Instead of a block mask over the full sequence, the sub-sequences are moved into the
batch dimension, so each attention call sees k times fewer keys and a plain dense kernel does the work.

Token p belongs to sub-sequence
  * ``p mod k``            for *single skip* (every k-th token), and
  * ``floor(p / k) mod k`` for *group skip* (runs of k adjacent tokens, every k-th run).

The sequence is padded at the end to a multiple of k² so both patterns tile it exactly; padded keys are
masked by the caller's bias and padded queries are dropped after the reverse regrouping.

For the attention call itself no copy is needed for single skip: in a contiguous (B, S, heads, d)
tensor, (B, S/k, k·heads, d) is a free view in which "head" j·heads + h is head h of sub-sequence j.
Group skip is single skip after swapping the two base-k digits m and r of every position
(:func:`group_to_single_order`, its own inverse), which is one copy per tensor.
"""

from __future__ import annotations

import torch


def skiparse_pad_len(seq_len: int, ratio: int) -> int:
    """Tokens to append so that ``seq_len`` becomes a multiple of ratio²."""
    return (-seq_len) % (ratio * ratio)


def skiparse_group(x: torch.Tensor, ratio: int, grouped: bool) -> torch.Tensor:
    """(B, S, *F) -> (B·k, S/k, *F); batch index b·k + j holds sub-sequence j of sample b."""
    batch, seq = x.shape[:2]
    features = x.shape[2:]
    if grouped:
        # p = n·k² + m·k + r, sub-sequence m
        x = x.reshape(batch, seq // (ratio * ratio), ratio, ratio, *features).transpose(1, 2)  # (B, m, n, r, *F)
    else:
        # p = g·k + j, sub-sequence j
        x = x.reshape(batch, seq // ratio, ratio, *features).transpose(1, 2)  # (B, j, g, *F)
    return x.reshape(batch * ratio, seq // ratio, *features)


def skiparse_ungroup(x: torch.Tensor, ratio: int, grouped: bool) -> torch.Tensor:
    """Inverse of :func:`skiparse_group`: (B·k, S/k, *F) -> (B, S, *F)."""
    batch = x.shape[0] // ratio
    sub_len = x.shape[1]
    features = x.shape[2:]
    if grouped:
        x = x.reshape(batch, ratio, sub_len // ratio, ratio, *features).transpose(1, 2)  # (B, n, m, r, *F)
    else:
        x = x.reshape(batch, ratio, sub_len, *features).transpose(1, 2)  # (B, g, j, *F)
    return x.reshape(batch, sub_len * ratio, *features)


def skiparse_subsequence_ids(seq_len: int, ratio: int, grouped: bool) -> torch.Tensor:
    """Sub-sequence index of every position (S,): the block-mask view of a Skiparse layer."""
    positions = torch.arange(seq_len)
    return (positions // ratio) % ratio if grouped else positions % ratio


def group_to_single_order(x: torch.Tensor, ratio: int) -> torch.Tensor:
    """(B, S, *F) with S a multiple of k²: position n·k² + m·k + r moves to n·k² + r·k + m.

    Group-skip sub-sequence m becomes single-skip sub-sequence m with its tokens in the same order.
    Applying it twice gives the input back."""
    batch, seq = x.shape[:2]
    features = x.shape[2:]
    x = x.reshape(batch, seq // (ratio * ratio), ratio, ratio, *features).transpose(2, 3)  # (B, n, r, m, *F)
    return x.reshape(batch, seq, *features)

"""Multi-head attention of the Open-Sora Plan v1.3 transformer.

One module serves both roles, with the reference's parameter names (``to_q``, ``to_k``, ``to_v``,
``to_out.0``) so released checkpoints load unchanged:

* self-attention: 3-D RoPE on q and k, then dense or Skiparse attention over the video tokens;
* cross-attention: video queries against projected text states (no RoPE, never regrouped; the
  reference regroups q and repeats the text k times, which computes exactly the same rows).

Masks are additive biases with the reference's constants so that even degenerate rows (every key
masked) produce the same numbers. All attention goes through ``scaled_dot_product_attention``, which
picks the best kernel per device; a ``None`` bias keeps the flash kernels available.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rope import rotate
from .skiparse import group_to_single_order, skiparse_group, skiparse_pad_len

MASKED_KEY_BIAS = -10000.0  # a video or text key marked 0 in its mask
PADDED_KEY_BIAS = -9980.0  # a key appended by Skiparse padding


def dense_attention(q, k, v, bias=None):
    """Attention over (B, S, heads, d) tensors; bias broadcasts to (B, heads, S_q, S_k)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias)
    return out.transpose(1, 2)  # (B, S_q, heads, d)


def skiparse_attention(q, k, v, bias, ratio: int, grouped: bool):
    """Skiparse self-attention on (B, S, heads, d); ``bias`` is already regrouped, (B·k, 1, 1, S'/k).

    The k sub-sequences ride in the head axis (see :mod:`.skiparse`): no copy for single skip, one
    reordering per tensor for group skip."""
    batch, seq_len, heads, head_dim = q.shape
    pad = skiparse_pad_len(seq_len, ratio)
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
    if grouped:
        q, k, v = (group_to_single_order(t, ratio) for t in (q, k, v))
    padded_len = seq_len + pad
    q, k, v = (t.reshape(batch, padded_len // ratio, ratio * heads, head_dim) for t in (q, k, v))
    if bias is not None:  # (B·k, 1, 1, L) -> (B, k·heads, 1, L), one row per sub-sequence and head
        bias = bias.reshape(batch, ratio, 1, 1, -1).expand(-1, -1, heads, -1, -1).reshape(batch, ratio * heads, 1, -1)
    out = dense_attention(q, k, v, bias).reshape(batch, padded_len, heads, head_dim)
    if grouped:
        out = group_to_single_order(out, ratio)
    return out[:, :seq_len]  # (B, S, heads, d)


def key_padding_bias(keep: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, L) keep-mask (1 = attend) -> additive bias (B, 1, 1, L), or None when nothing is masked."""
    if keep is None:
        return None
    return ((1 - keep.to(dtype)) * MASKED_KEY_BIAS)[:, None, None, :]


def self_attention_bias(
    token_keep: torch.Tensor | None,
    batch: int,
    seq_len: int,
    ratio: int,
    grouped: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | None:
    """Additive key bias for one kind of self-attention layer.

    ``token_keep`` (B, S) bool, or None (all tokens valid). Dense layers (ratio 1) get (B, 1, 1, S);
    Skiparse layers get the padded, regrouped bias (B·k, 1, 1, S'/k). None when no key is masked.
    """
    pad = skiparse_pad_len(seq_len, ratio) if ratio > 1 else 0
    if token_keep is None and pad == 0:
        return None
    if token_keep is None:
        bias = torch.zeros(batch, seq_len, dtype=dtype, device=device)
    else:
        bias = (~token_keep).to(dtype) * MASKED_KEY_BIAS  # (B, S)
    if ratio == 1:
        return bias[:, None, None, :]
    bias = F.pad(bias, (0, pad), value=PADDED_KEY_BIAS)  # (B, S')
    return skiparse_group(bias, ratio, grouped)[:, None, None, :]  # (B·k, 1, 1, S'/k)


class Attention(nn.Module):
    """Projections + attention; ``context`` None means self-attention."""

    def __init__(
        self,
        query_dim: int,
        heads: int,
        head_dim: int,
        context_dim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        inner_dim = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(context_dim or query_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(context_dim or query_dim, inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=True), nn.Dropout(dropout)])
        self.sequence_parallel = None  # a soraplan.parallel.UlyssesGroup for self-attention, when attached

    def project(self, hidden_states: torch.Tensor, context: torch.Tensor | None = None):
        """q (B, S, heads, d) and k, v (B, L, heads, d); soraplan.acceleration.fuse_qkv swaps this."""
        source = hidden_states if context is None else context
        q = self.to_q(hidden_states).unflatten(-1, (self.heads, -1))
        k = self.to_k(source).unflatten(-1, (self.heads, -1))
        v = self.to_v(source).unflatten(-1, (self.heads, -1))
        return q, k, v

    def forward(
        self,
        hidden_states: torch.Tensor,  # (B, S, D)
        context: torch.Tensor | None = None,  # (B, L, D_ctx)
        bias: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,  # cos, sign-folded sin: (S, head_dim)
        sparse_ratio: int = 1,
        sparse_group: bool = False,
    ) -> torch.Tensor:
        q, k, v = self.project(hidden_states, context)
        parallel = self.sequence_parallel if context is None else None
        if parallel is not None:  # local tokens, all heads -> all tokens, local heads
            q, k, v = (parallel.to_full_sequence(t) for t in (q, k, v))
        if rope is not None:
            q = rotate(q, *rope)
            k = rotate(k, *rope)
        if sparse_ratio > 1:
            out = skiparse_attention(q, k, v, bias, sparse_ratio, sparse_group)
        else:
            out = dense_attention(q, k, v, bias)
        if parallel is not None:
            out = parallel.to_local_sequence(out)
        out = self.to_out[0](out.flatten(2))  # (B, S, D)
        return self.to_out[1](out)

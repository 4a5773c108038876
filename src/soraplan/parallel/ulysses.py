"""Ulysses (DeepSpeed-style) sequence parallelism for the v1.3 transformer.

Each of N ranks holds a contiguous 1/N of the latent frames, so its tokens are a contiguous slice of
the (t, h, w) sequence. Everything but self-attention works on local tokens. Self-attention swaps
layouts with two all-to-alls: before it, every rank trades its tokens of all heads for all tokens of
1/N of the heads (so RoPE and Skiparse see the full sequence, exactly as on one device); after it,
the reverse. Cross-attention needs no communication: every rank keeps the whole (short) text and
attends from its own tokens.

Requirements: heads divisible by N; the caller pads the frame count to a multiple of N and masks the
padding with ``attention_mask`` (see ``OpenSoraInpaintPipeline``), so any frame count works.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def gather_cat(x: torch.Tensor, dim: int, group=None) -> torch.Tensor:
    """Every rank's ``x`` of ``group`` concatenated along ``dim`` in rank order (no gradient)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


class _AllToAll(torch.autograd.Function):
    """Equal-split all-to-all over dim 0; its gradient is the same exchange run backwards."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        x = x.contiguous()
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        dist.all_to_all_single(out, grad, group=ctx.group)
        return out, None


class UlyssesGroup:
    """A process group used for sequence parallelism (default: all ranks)."""

    def __init__(self, group: dist.ProcessGroup | None = None):
        if not dist.is_initialized():
            raise RuntimeError("sequence parallelism needs torch.distributed initialised (run under torchrun)")
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    def _swap(self, x: torch.Tensor) -> torch.Tensor:
        """all-to-all over dim 0 of (N, ...): chunk j goes to rank j; differentiable."""
        return _AllToAll.apply(x, self.group)

    def to_full_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S_local, H, d) -> (B, N·S_local, H/N, d): all tokens, this rank's head group."""
        batch, seq, heads, dim = x.shape
        x = x.view(batch, seq, self.world, heads // self.world, dim).permute(2, 0, 1, 3, 4)  # (N, B, S_l, H/N, d)
        x = self._swap(x)  # x[i] = rank i's tokens, my heads
        return x.permute(1, 0, 2, 3, 4).reshape(batch, self.world * seq, heads // self.world, dim)

    def to_local_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N·S_local, H/N, d) -> (B, S_local, H, d): this rank's tokens, all heads."""
        batch, seq, heads, dim = x.shape
        local = seq // self.world
        x = x.view(batch, self.world, local, heads, dim).permute(1, 0, 2, 3, 4)  # (N, B, S_l, H/N, d)
        x = self._swap(x)  # x[i] = my tokens, rank i's heads
        return x.permute(1, 2, 0, 3, 4).reshape(batch, local, self.world * heads, dim)

    def gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Concatenate every rank's ``x`` along ``dim`` in rank order (no gradient)."""
        return gather_cat(x, dim, self.group)

    def local_slice(self, size: int) -> slice:
        """This rank's part of an axis of length ``size`` (a multiple of the world size)."""
        part = size // self.world
        return slice(self.rank * part, (self.rank + 1) * part)


def enable_sequence_parallel(transformer, group: UlyssesGroup | None) -> None:
    """Attach (or with None, detach) sequence parallelism to a v1.3 transformer."""
    if group is not None and transformer.config.num_attention_heads % group.world:
        raise ValueError(
            f"{transformer.config.num_attention_heads} attention heads cannot be split over {group.world} ranks"
        )
    transformer.sequence_parallel = group
    for block in transformer.transformer_blocks:
        block.attn1.sequence_parallel = group

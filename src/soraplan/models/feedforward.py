"""The transformer's feed-forward network, with a faster tanh-GELU on CPU.

The released model uses diffusers' ``FeedForward(activation_fn="gelu-approximate")``; its parameter
names (``net.0.proj``, ``net.2``) are kept by building exactly that module. Only the activation's
arithmetic changes, and only where it pays: PyTorch's CPU ``tanh`` is several times slower than its
``sigmoid``, and the tanh approximation of GELU is the same function written with a sigmoid,

    0.5·x·(1 + tanh(u)) = x·σ(2u),   u = √(2/π)·(x + 0.044715·x³),

so in float32 on CPU the forward pass evaluates the right-hand side (equal to ~5e-7) in place; the
gradient is PyTorch's own tanh-GELU gradient. Other devices and dtypes call ``F.gelu`` unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.activations import GELU
from diffusers.models.attention import FeedForward

_TWO_U_LINEAR = 2 * math.sqrt(2 / math.pi)  # 2u = _TWO_U_LINEAR·(x + 0.044715·x³)
_TWO_U_CUBIC = _TWO_U_LINEAR * 0.044715


def _tanh_gelu_via_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """x·σ(2u) in three full-size passes and one new tensor."""
    out = x * x
    out.mul_(_TWO_U_CUBIC).add_(_TWO_U_LINEAR).mul_(x)  # 2u
    return out.sigmoid_().mul_(x)


class _TanhGELUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _tanh_gelu_via_sigmoid(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.gelu_backward(grad, x, approximate="tanh")


def tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x, approximate="tanh")``, computed through a sigmoid for float32 CPU tensors."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return F.gelu(x, approximate="tanh")
    if torch.is_grad_enabled() and x.requires_grad:
        return _TanhGELUFunction.apply(x)
    return _tanh_gelu_via_sigmoid(x)


class TanhGELU(GELU):
    """diffusers' ``GELU(approximate="tanh")`` (same ``proj`` parameters) with :func:`tanh_gelu`."""

    def gelu(self, gate: torch.Tensor) -> torch.Tensor:
        return tanh_gelu(gate)


def feed_forward(dim: int, dropout: float, activation_fn: str) -> FeedForward:
    """The block's feed-forward network: diffusers' module and key names, faster tanh-GELU on CPU."""
    ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn, final_dropout=False, bias=True)
    activation = ff.net[0]
    if type(activation) is GELU and activation.approximate == "tanh":
        fast = TanhGELU(1, 1, approximate="tanh")  # a 1x1 placeholder projection, replaced at once:
        fast.proj = activation.proj  # the already-initialised one moves over (no second large init)
        ff.net[0] = fast
    return ff

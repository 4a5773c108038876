"""The feed-forward network keeps diffusers' keys and its tanh-GELU is PyTorch's, value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward

from soraplan.models.feedforward import feed_forward, tanh_gelu

EXTREMES = [-1e30, -1e4, -50.0, -10.0, -3.0, -1e-3, -1e-30, 0.0, 1e-30, 1e-3, 3.0, 10.0, 50.0, 1e4, 1e30]


def test_tanh_gelu_equals_pytorch_in_float32():
    x = torch.cat([torch.randn(10_000) * 4, torch.tensor(EXTREMES)])
    expected = F.gelu(x, approximate="tanh")
    ours = tanh_gelu(x.clone())
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)
    assert (ours[x < 0] <= 0).all()
    assert tanh_gelu(torch.tensor([float("nan")])).isnan().all()


def test_tanh_gelu_leaves_its_input_alone_and_has_pytorchs_gradient():
    x = (torch.randn(64, 48) * 3).requires_grad_()
    saved = x.detach().clone()
    grad_out = torch.randn(64, 48)
    (ours,) = torch.autograd.grad(tanh_gelu(x), x, grad_out)
    (expected,) = torch.autograd.grad(F.gelu(x, approximate="tanh"), x, grad_out)
    assert torch.equal(x.detach(), saved)
    torch.testing.assert_close(ours, expected, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_dtypes_call_pytorch_unchanged(dtype):
    x = torch.randn(1000).to(dtype)
    assert torch.equal(tanh_gelu(x), F.gelu(x, approximate="tanh"))


@pytest.mark.parametrize("activation_fn", ["gelu-approximate", "gelu", "geglu"])
def test_feed_forward_has_diffusers_keys_and_output(activation_fn):
    torch.manual_seed(0)
    ours = feed_forward(24, 0.0, activation_fn)
    theirs = FeedForward(24, dropout=0.0, activation_fn=activation_fn, final_dropout=False, bias=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 7, 24)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-6)

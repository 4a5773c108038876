"""Fused q/k/v projections for inference: one (D -> 3D) matrix product per self-attention instead of three.

The checkpoint keeps its separate ``to_q`` / ``to_k`` / ``to_v`` parameters (released key names, and what
``save_pretrained`` writes); the fused weight is a non-persistent buffer built from them, so it follows
``.to()`` but never reaches a state dict. Fuse after loading weights and before sampling; training
through a fused model would not update the buffer, so ``unfuse_qkv`` (or not fusing) is for training.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from ..models.attention import Attention


def _fused_project(self: Attention, hidden_states: torch.Tensor, context: torch.Tensor | None = None):
    qkv = F.linear(hidden_states, self.fused_qkv_weight, self.fused_qkv_bias)  # (B, S, 3·heads·d)
    return qkv.unflatten(-1, (3, self.heads, -1)).unbind(dim=-3)


def fuse_qkv(transformer) -> int:
    """Fuse the self-attention (``attn1``) of every block of a v1.3 transformer; returns how many."""
    for block in transformer.transformer_blocks:
        attention = block.attn1
        projections = (attention.to_q, attention.to_k, attention.to_v)
        if any(hasattr(p, "lora_A") for p in projections):  # its copy would leave the adapter out
            raise ValueError("fuse_qkv on a transformer with unmerged LoRA adapters: fuse them first "
                             "(pipe.fuse_lora(); pipe.unload_lora_weights())")
        weight = torch.cat([p.weight for p in projections]).detach()
        bias = torch.cat([p.bias for p in projections]).detach() if attention.to_q.bias is not None else None
        attention.register_buffer("fused_qkv_weight", weight, persistent=False)
        attention.register_buffer("fused_qkv_bias", bias, persistent=False)
        attention.project = types.MethodType(_fused_project, attention)
    return len(transformer.transformer_blocks)


def unfuse_qkv(transformer) -> None:
    """Back to the separate projections (and drop the fused copies)."""
    for module in transformer.modules():
        if isinstance(module, Attention) and "project" in module.__dict__:
            del module.project
            del module.fused_qkv_weight, module.fused_qkv_bias

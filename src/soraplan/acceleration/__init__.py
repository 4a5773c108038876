"""Opt-in inference accelerations that attach to a model or pipeline without changing its code."""

from .fused_qkv import fuse_qkv, unfuse_qkv
from .step_cache import StepCacheHook, StepCacheStats, disable_step_cache, enable_step_cache, get_step_cache

__all__ = [
    "StepCacheHook", "StepCacheStats", "disable_step_cache", "enable_step_cache", "fuse_qkv", "get_step_cache",
    "unfuse_qkv",
]

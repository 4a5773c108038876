"""Step caching (TeaCache-style): skip transformer evaluations whose input barely changed.

Between neighbouring sampling steps the blocks' total update to the tokens (output tokens minus input
tokens, the *residual*) changes slowly, and how much it changes follows how much the first block's
modulated input changed. So, at every call:

    m = first block's modulated input  LN(x)·(1 + scale(t)) + shift(t)          (B, S, D), cheap
    change += mean|m - m_previous| / mean|m_previous|                            since the last full run
    change <  threshold  ->  tokens_out = tokens_in + cached residual            (the blocks are skipped)
    otherwise            ->  run the blocks, cache tokens_out - tokens_in, change = 0

The first and the last call of a sampling run are always evaluated. The decision is taken on the whole
batch, so the two classifier-free-guidance halves are always computed or skipped together; when one
video is split over processes (sequence or CFG parallel) the change is summed over them first, so every
rank takes the same decision. The cache is a diffusers ``ModelHook`` on the transformer: the model code
knows nothing about it, and ``disable_step_cache`` restores the plain forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook

HOOK_NAME = "soraplan_step_cache"


@dataclass
class StepCacheStats:
    """Transformer calls in the last (or current) sampling run."""

    computed: int = 0
    skipped: int = 0

    @property
    def calls(self) -> int:
        return self.computed + self.skipped

    @property
    def speedup(self) -> float:
        """Calls per full evaluation: the ideal speed-up of the denoising loop."""
        return self.calls / max(self.computed, 1)


class StepCacheHook(ModelHook):
    """Wraps ``OpenSoraT2V.forward``; see the module docstring for the rule."""

    _is_stateful = True

    def __init__(self, threshold: float):
        super().__init__()
        if threshold < 0:
            raise ValueError(f"step cache threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        self.groups: list = []  # process groups one video is split over (the change is summed over them)
        self.total_calls: int | None = None  # calls in one sampling run, when known: the last one is computed
        self.stats = StepCacheStats()
        self._previous: torch.Tensor | None = None
        self._residual: torch.Tensor | None = None
        self._change = 0.0

    def begin(self, total_calls: int | None, groups=()) -> None:
        """Start a sampling run of ``total_calls`` transformer calls, its video split over the process
        ``groups`` (sequence parallel, CFG parallel; a None entry is the default group). The pipeline
        calls this."""
        self.reset_state(None)
        self.total_calls = total_calls
        self.groups = list(groups)

    def reset_state(self, module):
        self.stats = StepCacheStats()
        self._previous = None
        self._residual = None
        self._change = 0.0
        return module

    def _relative_change(self, current: torch.Tensor) -> float:
        sums = torch.stack([(current - self._previous).abs().sum(), self._previous.abs().sum()]).double()
        for group in self.groups:  # nested splits: summing over each in turn sums over all of them
            dist.all_reduce(sums, group=group)
        return (sums[0] / sums[1].clamp_min(1e-12)).item()

    def _must_compute(self, modulated: torch.Tensor) -> bool:
        call = self.stats.calls
        last_call = self.total_calls is not None and call == self.total_calls - 1
        fresh = self._residual is None or self._previous is None or self._previous.shape != modulated.shape
        if fresh or last_call:
            return True
        self._change += self._relative_change(modulated)
        return self._change >= self.threshold

    def new_forward(self, module, hidden_states, timestep, encoder_hidden_states, attention_mask=None,
                    encoder_attention_mask=None, return_dict=True, guidance=None, **unused):
        state = module.prepare_inputs(hidden_states, timestep, encoder_hidden_states, attention_mask,
                                      encoder_attention_mask, guidance)
        modulated = module.transformer_blocks[0].modulated_input(state.tokens, state.modulation)  # (B, S, D)
        if self._must_compute(modulated):
            tokens = module.run_blocks(state)
            self._residual = tokens - state.tokens
            self._change = 0.0
            self.stats.computed += 1
        else:
            tokens = state.tokens + self._residual
            self.stats.skipped += 1
        self._previous = modulated
        return module.finish(tokens, state, return_dict)


def enable_step_cache(transformer, threshold: float) -> StepCacheHook:
    """Attach (or re-tune) a step cache on a v1.3 transformer; returns the hook (its ``stats``)."""
    hook = get_step_cache(transformer)
    if hook is not None:
        hook.threshold = threshold
        return hook
    hook = StepCacheHook(threshold)
    HookRegistry.check_if_exists_or_initialize(transformer).register_hook(hook, HOOK_NAME)
    return hook


def disable_step_cache(transformer) -> None:
    registry = getattr(transformer, "_diffusers_hook", None)
    if registry is not None and registry.get_hook(HOOK_NAME) is not None:
        registry.remove_hook(HOOK_NAME, recurse=False)


def get_step_cache(transformer) -> StepCacheHook | None:
    registry = getattr(transformer, "_diffusers_hook", None)
    return None if registry is None else registry.get_hook(HOOK_NAME)

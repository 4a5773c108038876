"""Step caching: the hook's rule on a real transformer, and its speed/quality on the shipped demo model."""

from __future__ import annotations

import pytest
import torch

from soraplan.acceleration import disable_step_cache, enable_step_cache, get_step_cache
from soraplan.demo.evaluate import psnr
from soraplan.models import build_inpaint

from ..conftest import randomize_


def _inputs(model, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    channels = model.expected_in_channels
    x = torch.randn(batch, channels, 3, 8, 8, generator=generator)
    text = torch.randn(batch, 1, 5, model.config.caption_channels, generator=generator)
    return x, text


@pytest.fixture
def model():
    return randomize_(build_inpaint("tiny")).eval()


def test_threshold_zero_computes_every_call_exactly(model):
    x, text = _inputs(model)
    with torch.no_grad():
        plain = [model(x + 0.1 * k, 900 - 100 * k, text).sample for k in range(4)]
        hook = enable_step_cache(model, threshold=0.0)
        hook.begin(total_calls=4)
        cached = [model(x + 0.1 * k, 900 - 100 * k, text).sample for k in range(4)]
    assert hook.stats.computed == 4 and hook.stats.skipped == 0
    for a, b in zip(plain, cached):
        assert torch.equal(a, b)


def test_skipped_call_reuses_the_residual_and_last_call_is_computed(model):
    x, text = _inputs(model)
    steps = [(x, 900), (x * 0.99, 880), (x * 0.98, 860), (x * 0.97, 840)]
    hook = enable_step_cache(model, threshold=1e9)
    hook.begin(total_calls=len(steps))
    with torch.no_grad():
        outputs = [model(latent, t, text).sample for latent, t in steps]
        assert (hook.stats.computed, hook.stats.skipped) == (2, 2)  # first and last only
        disable_step_cache(model)
        assert get_step_cache(model) is None
        # what a skipped call must return: this call's embedding + the first call's block residual
        first = model.prepare_inputs(x, 900, text)
        residual = model.run_blocks(first) - first.tokens
        second = model.prepare_inputs(steps[1][0], steps[1][1], text)
        expected = model.finish(second.tokens + residual, second).sample
        assert torch.allclose(outputs[1], expected, atol=1e-6)
        assert not torch.allclose(outputs[1], model(steps[1][0], steps[1][1], text).sample, atol=1e-4)
        assert torch.equal(outputs[3], model(*steps[3], text).sample)  # the last call ran the blocks


def test_the_decision_follows_the_accumulated_change(model):
    x, text = _inputs(model)
    hook = enable_step_cache(model, threshold=0.05)
    hook.begin(total_calls=None)
    with torch.no_grad():
        model(x, 500, text)
        model(x, 500, text)  # identical input: no change, skipped
        assert (hook.stats.computed, hook.stats.skipped) == (1, 1)
        model(x * 3 + 1, 500, text)  # a large change: computed
        assert (hook.stats.computed, hook.stats.skipped) == (2, 1)
    with pytest.raises(ValueError, match=">= 0"):
        enable_step_cache(build_inpaint("tiny"), threshold=-1)


@pytest.mark.parametrize("task", ["i2v", "transition"])
def test_demo_model_halves_the_evaluations_at_high_psnr(task):
    """The target of the feature: >= 1.7x fewer evaluations at >= 30 dB against the uncached video."""
    from soraplan.cli.demo import shipped_examples
    from soraplan.demo.assets import DEMO_PIPELINE
    from soraplan.pipelines import load_pipeline

    pipe = load_pipeline(str(DEMO_PIPELINE))
    pipe.set_progress_bar_config(disable=True)
    example = next(e for e in shipped_examples() if e["task"] == task)
    kwargs = dict(conditions=example["conditions"], num_frames=17, height=64, width=64,
                  num_inference_steps=100, guidance_scale=7.5)
    plain = pipe(example["prompt"], generator=torch.Generator().manual_seed(0), **kwargs).videos
    pipe.enable_step_cache(0.4)
    cached = pipe(example["prompt"], generator=torch.Generator().manual_seed(0), **kwargs).videos
    stats = pipe.step_cache_stats
    assert stats.calls == 100 and stats.speedup >= 1.7
    assert psnr(plain, cached) >= 30
    pipe.enable_step_cache(None)
    assert pipe.step_cache_stats is None

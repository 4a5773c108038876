"""The I2V pipeline end to end with tiny real components."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soraplan.masks import MaskType
from soraplan.pipelines import OpenSoraInpaintPipeline, load_pipeline
from soraplan.schedulers import SAMPLE_METHODS, build_scheduler

from ..conftest import build_tiny_pipeline

FAST = dict(num_frames=9, num_inference_steps=3, max_sequence_length=24)


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline()


def image(value=None, seed=0, size=(48, 64)):
    if value is not None:
        return np.full((*size, 3), value, np.uint8)
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


def run(pipe, seed=0, **kwargs):
    return pipe(**{**FAST, "prompt": "a red circle moves right", **kwargs},
                generator=torch.Generator().manual_seed(seed)).videos


def test_i2v_output_and_seed_determinism(pipe):
    a = run(pipe, conditions=[image()])
    assert a.shape == (1, 9, 32, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, run(pipe, conditions=[image()]))
    assert not np.array_equal(a, run(pipe, seed=1, conditions=[image()]))


def test_conditioning_reaches_the_model(pipe):
    dark, bright = run(pipe, conditions=[image(20)]), run(pipe, conditions=[image(230)])
    assert not np.array_equal(dark, bright)


def test_batch_of_prompts_and_samples(pipe):
    out = pipe(prompt=["a", "b"], conditions=[image()], num_samples_per_prompt=2, **FAST,
               generator=torch.Generator().manual_seed(0))
    assert out.videos.shape[0] == 4 and out.mask_type is MaskType.i2v


def test_modes_and_types(pipe):
    transition = pipe(prompt="x", conditions=[image(), image(seed=1)], **FAST)
    assert transition.mask_type is MaskType.transition and transition.given_frames == [0, 8]
    keyframes = pipe(prompt="x", conditions=[image(seed=s) for s in range(3)], condition_indices=[0, 4, 8],
                     crop_for_hw=True, height=32, width=48, **FAST)
    assert keyframes.mask_type is MaskType.random_temporal and keyframes.videos.shape == (1, 9, 32, 48, 3)
    assert keyframes.given_frames == [0, 4, 8]
    t2v = pipe(prompt="x", height=32, width=32, **FAST)
    assert t2v.mask_type is MaskType.t2iv and t2v.videos.shape == (1, 9, 32, 32, 3) and t2v.given_frames == []
    no_cfg = pipe(prompt="x", conditions=[image()], guidance_scale=1.0, **FAST)
    rescaled = pipe(prompt="x", conditions=[image()], guidance_rescale=0.7, **FAST)
    assert no_cfg.videos.shape == rescaled.videos.shape


def test_noise_strength_changes_only_with_noise(pipe):
    base = run(pipe, conditions=[image()])
    noisy = run(pipe, conditions=[image()], noise_strength=0.5)
    assert not np.array_equal(base, noisy)
    with pytest.raises(ValueError, match="noise_strength"):
        run(pipe, conditions=[image()], noise_strength=2.0)


@pytest.mark.parametrize("kwargs,message", [(dict(num_frames=8), "4k\\+1"), (dict(height=40), "multiples of 16")])
def test_invalid_arguments(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(pipe, **kwargs)


@pytest.mark.parametrize("method", list(SAMPLE_METHODS))
def test_every_sample_method_runs(pipe, method):
    pipe.scheduler = build_scheduler(method)
    try:
        out = run(pipe, conditions=[image()], num_inference_steps=4)
    finally:
        pipe.scheduler = build_scheduler()
    assert out.shape == (1, 9, 32, 64, 3)


def test_sde_dpm_solver_is_the_stochastic_variant_with_the_release_settings():
    scheduler = build_scheduler("DPMSolverMultistepSDE")
    assert scheduler.config.algorithm_type == "sde-dpmsolver++"
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.rescale_betas_zero_snr
    assert build_scheduler("DPMSolverMultistep").config.algorithm_type == "dpmsolver++"


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = load_pipeline(str(tmp_path))
    assert isinstance(loaded, OpenSoraInpaintPipeline)
    assert np.array_equal(run(loaded, conditions=[image()]), run(pipe, conditions=[image()]))


def test_reference_folder_layout(pipe, tmp_path):
    """The release ships transformer, VAE and text encoder as separate folders."""
    pipe.transformer.save_pretrained(tmp_path / "transformer")
    pipe.vae.save_pretrained(tmp_path / "vae")
    pipe.text_encoder.save_pretrained(tmp_path / "t5")
    pipe.tokenizer.save_pretrained(tmp_path / "t5")
    loaded = load_pipeline(str(tmp_path / "transformer"), str(tmp_path / "vae"), str(tmp_path / "t5"))
    assert np.array_equal(run(loaded, conditions=[image()]), run(pipe, conditions=[image()]))
    with pytest.raises(ValueError, match="--ae_path"):
        load_pipeline(str(tmp_path / "transformer"))


def test_bf16_pipeline_runs(tmp_path):
    pipe = build_tiny_pipeline().to(torch.bfloat16)
    out = run(pipe, conditions=[image()])
    assert out.shape == (1, 9, 32, 64, 3)


def test_too_few_steps_for_a_scheduler_is_a_clear_error(pipe):
    pipe.scheduler = build_scheduler("PNDM")
    try:
        with pytest.raises(ValueError, match="PNDMScheduler cannot sample in 2 steps"):
            run(pipe, conditions=[image()], num_inference_steps=2)
    finally:
        pipe.scheduler = build_scheduler()


def test_compiled_transformer_is_still_the_i2v_model(pipe):
    """`soraplan sample --compile` compiles in place; a torch.compile wrapper must work as well."""
    reference = run(pipe, conditions=[image()])
    original = pipe.transformer
    try:
        torch._dynamo.reset()
        pipe.transformer = torch.compile(original, backend="eager")
        assert pipe.takes_conditioning
        assert np.array_equal(run(pipe, conditions=[image()]), reference)
    finally:
        pipe.transformer = original


def test_a_pipeline_folder_carries_its_sampling_defaults(tmp_path):
    """A model made for another guidance scale or step count says so in model_index.json; calls (and
    the CLIs) without those arguments use them, explicit arguments still win."""
    pipe = build_tiny_pipeline()
    assert pipe.sampling_settings() == (100, 7.5)  # the release's, when nothing is said
    pipe.register_to_config(default_guidance_scale=3.0, default_num_inference_steps=4)
    pipe.save_pretrained(tmp_path / "p")
    loaded = load_pipeline(str(tmp_path / "p"))
    assert loaded.sampling_settings() == (4, 3.0) and loaded.sampling_settings(7, 1.0) == (7, 1.0)
    kwargs = {k: v for k, v in FAST.items() if k != "num_inference_steps"}
    implicit = loaded("a red circle", conditions=[image()], generator=torch.Generator().manual_seed(0), **kwargs).videos
    explicit = loaded("a red circle", conditions=[image()], generator=torch.Generator().manual_seed(0),
                      num_inference_steps=4, guidance_scale=3.0, **kwargs).videos
    release = loaded("a red circle", conditions=[image()], generator=torch.Generator().manual_seed(0),
                     num_inference_steps=4, guidance_scale=7.5, **kwargs).videos
    assert np.array_equal(implicit, explicit) and not np.array_equal(implicit, release)


def test_a_task_may_carry_its_own_default_guidance(tmp_path):
    """task_guidance_scales (model_index.json): a call of that mask type without guidance_scale uses its
    scale (and says so in the output); other types use the default; an explicit scale still wins."""
    pipe = build_tiny_pipeline()
    pipe.register_to_config(default_guidance_scale=3.0, task_guidance_scales={"transition": 1.5})
    pipe.save_pretrained(tmp_path / "p")
    loaded = load_pipeline(str(tmp_path / "p"))
    assert loaded.task_guidance_scales == {"transition": 1.5}
    assert loaded.sampling_settings(4, None, "transition") == (4, 1.5) and loaded.sampling_settings(4) == (4, 3.0)
    assert loaded.describe_guidance() == "guidance 3 (transition 1.5)" and loaded.describe_guidance(5) == "guidance 5"

    def call(conditions, guidance=None):
        return loaded("a red circle", conditions=conditions, generator=torch.Generator().manual_seed(0),
                      guidance_scale=guidance, **FAST)

    pair = [image(seed=1), image(seed=2)]
    implicit, explicit, default = call(pair), call(pair, 1.5), call(pair, 3.0)
    assert implicit.mask_type is MaskType.transition and implicit.guidance_scale == 1.5
    assert np.array_equal(implicit.videos, explicit.videos) and not np.array_equal(implicit.videos, default.videos)
    single = call([image(seed=1)])
    assert single.guidance_scale == 3.0 and np.array_equal(single.videos, call([image(seed=1)], 3.0).videos)
    with pytest.raises(ValueError, match="unknown mask type 'transitions'"):
        OpenSoraInpaintPipeline(pipe.transformer, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler,
                                task_guidance_scales={"transitions": 2})


@pytest.fixture(scope="module")
def reference_pipe():
    """A tiny pipeline whose transformer says it was trained with a reference frame (--continuation_anchor)."""
    pipe = build_tiny_pipeline(seed=3)
    pipe.transformer.register_to_config(reference_frame=True)
    return pipe


def test_a_reference_goes_before_the_clip_as_its_own_given_latent_frame(reference_pipe):
    """The transformer sees one more latent frame, first: the reference image encoded alone, mask 0
    (given); the clip's conditioning after it as without a reference; the video is the clip's
    num_frames frames, and the reference changes them."""
    pipe = reference_pipe
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        plain = run(pipe, conditions=[image(seed=1)], mask_type="i2v")
        plain_inputs = list(seen)
        seen.clear()
        referenced = run(pipe, conditions=[image(seed=1)], mask_type="i2v", reference=image(seed=2, size=(96, 128)))
    finally:
        handle.remove()
    assert referenced.shape == plain.shape == (1, 9, 32, 64, 3)
    assert not np.array_equal(referenced, plain)
    assert np.array_equal(referenced, run(pipe, conditions=[image(seed=1)], mask_type="i2v",
                                          reference=image(seed=2, size=(96, 128))))
    model_in, plain_in = seen[0], plain_inputs[0]  # (2 CFG halves, 8 + 8 + 4, T', h, w)
    assert model_in.shape[2] == plain_in.shape[2] + 1 == 4
    assert torch.equal(model_in[:, 8:, 1:], plain_in[:, 8:])  # the clip's masked latents and mask, unchanged
    assert torch.all(model_in[:, 16:, 0] == 0)  # the reference: given
    pixels = torch.from_numpy(image(seed=2, size=(96, 128))).permute(2, 0, 1)[None]  # resized as the clip: 32x64
    from soraplan.data.transforms import center_crop_resize

    pixels = center_crop_resize(pixels, 32, 64).float().div(255).mul(2).sub(1).transpose(0, 1)[None]
    expected = pipe.vae.normalize_latents(pipe.vae.encode(pixels).mode())[:, :, 0]
    assert torch.allclose(model_in[:1, 8:16, 0], expected, atol=1e-5)


def test_a_reference_needs_a_model_trained_for_it(pipe, reference_pipe):
    with pytest.raises(ValueError, match="not trained with a reference frame"):
        run(pipe, conditions=[image()], reference=image())
    with pytest.raises(ValueError, match="num_frames must be more than 1"):
        run(reference_pipe, conditions=[image()], reference=image(), num_frames=1)

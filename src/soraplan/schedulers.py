"""Noise schedulers by the reference's ``--sample_method`` names, built from diffusers.

The released I2V model is sampled with ``EulerAncestralDiscrete``, v-prediction and zero terminal SNR
(trailing timestep spacing), 100 steps, guidance 7.5.
"""

from __future__ import annotations

import inspect
import logging

import diffusers

logger = logging.getLogger(__name__)
SAMPLE_METHODS = {
    "DDIM": "DDIMScheduler",
    "EulerDiscrete": "EulerDiscreteScheduler",
    "DDPM": "DDPMScheduler",
    "DPMSolverMultistep": "DPMSolverMultistepScheduler",
    "DPMSolverSinglestep": "DPMSolverSinglestepScheduler",
    "PNDM": "PNDMScheduler",
    "HeunDiscrete": "HeunDiscreteScheduler",
    "EulerAncestralDiscrete": "EulerAncestralDiscreteScheduler",
    "DEISMultistep": "DEISMultistepScheduler",
    "KDPM2AncestralDiscrete": "KDPM2AncestralDiscreteScheduler",
    "CogVideoX": "CogVideoXDDIMScheduler",
    "FlowMatchEulerDiscrete": "FlowMatchEulerDiscreteScheduler",
    # ours: stochastic DPM-Solver++(2M); on the demo model 25 steps keep Euler-A-100 quality (README)
    "DPMSolverMultistepSDE": "DPMSolverMultistepScheduler",
    # the sampler of a consistency-distilled student (soraplan distill --method lcm); such a student's
    # folder carries it, with the timestep grid it was distilled on
    "LCM": "LCMScheduler",
}
EXTRA_KWARGS = {"DPMSolverMultistepSDE": {"algorithm_type": "sde-dpmsolver++"}}


def build_scheduler(
    sample_method: str = "EulerAncestralDiscrete",
    prediction_type: str = "v_prediction",
    rescale_betas_zero_snr: bool = True,
    v1_5_scheduler: bool = False,
):
    """A diffusers scheduler configured as the reference's ``get_scheduler``."""
    if sample_method not in SAMPLE_METHODS:
        raise ValueError(f"unknown --sample_method {sample_method!r}; choose one of {', '.join(SAMPLE_METHODS)}")
    cls = getattr(diffusers, SAMPLE_METHODS[sample_method])
    if sample_method == "FlowMatchEulerDiscrete":
        return cls()
    kwargs = dict(prediction_type=prediction_type, timestep_spacing="trailing" if rescale_betas_zero_snr else "leading",
                  rescale_betas_zero_snr=rescale_betas_zero_snr)
    if sample_method in ("DDIM", "DDPM"):
        kwargs["clip_sample"] = False
    if v1_5_scheduler:
        kwargs.update(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    kwargs.update(EXTRA_KWARGS.get(sample_method, {}))
    accepted = inspect.signature(cls.__init__).parameters
    dropped = sorted(k for k, v in kwargs.items() if k not in accepted and v not in (False, "leading"))
    if dropped:
        logger.warning("%s does not support %s; sampling without it", cls.__name__, ", ".join(dropped))
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})


def method_name(scheduler) -> str:
    """The --sample_method name of a scheduler object (its class name when it has none)."""
    name = type(scheduler).__name__
    if name == "DPMSolverMultistepScheduler" and getattr(scheduler.config, "algorithm_type", "") == "sde-dpmsolver++":
        return "DPMSolverMultistepSDE"
    return next((method for method, cls in SAMPLE_METHODS.items() if cls == name), name)


def scheduler_for(current, sample_method: str | None, **kwargs):
    """The scheduler a command samples with: the model folder's own (``current``) when no
    --sample_method is given or the same one is, else ``build_scheduler(sample_method, **kwargs)``. A
    folder's scheduler carries what its model was made for (a distilled student's step grid)."""
    if sample_method is None or sample_method == method_name(current):
        return current
    return build_scheduler(sample_method, **kwargs)

"""Process setup shared by the trainers, and what DeepSpeed's ZeRO stages need from them."""

from __future__ import annotations

import contextlib
import os

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs


def make_accelerator(mixed_precision: str, **kwargs) -> Accelerator:
    """An Accelerator that also joins several CPU-only processes (torchrun / accelerate launch) into one
    gloo group: without ``cpu=True`` accelerate would run N independent trainings.

    Under DeepSpeed (``accelerate launch`` with a DeepSpeed config) ``cpu=True`` would switch DeepSpeed
    off; on a machine without CUDA (DeepSpeed's ``DS_ACCELERATOR=cpu``) the gloo backend is named
    instead, without which accelerate counts one process and DeepSpeed two."""
    multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        if multi_process:
            kwargs["kwargs_handlers"] = [*kwargs.get("kwargs_handlers", []), InitProcessGroupKwargs(backend="gloo")]
        return Accelerator(mixed_precision=mixed_precision, **kwargs)
    return Accelerator(mixed_precision=mixed_precision, cpu=multi_process, **kwargs)


def zero_stage(accelerator: Accelerator) -> int:
    """The DeepSpeed ZeRO stage of this run; 0 without DeepSpeed."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return int(plugin.zero_stage or 0) if plugin is not None else 0


@contextlib.contextmanager
def hidden_from_transformers(accelerator: Accelerator):
    """Inside this block transformers and diffusers do not see ZeRO-3.

    Under ZeRO-3 accelerate tells transformers (and through it DeepSpeed's ``zero.Init``) to partition
    every model as it is created. The frozen VAE and text encoder never reach ``accelerator.prepare``,
    so partitioned they would hold empty weights: they, and the trained transformer, are built whole
    (host memory: one fp32 copy per process while it starts) and only ``prepare`` partitions. diffusers'
    EMAModel would also gather each parameter itself (and fails to import DeepSpeed when it does): the
    trainer gathers around it instead (``gathered_parameters``)."""
    if zero_stage(accelerator) != 3:
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # what transformers asks before it partitions a model it creates
    try:
        yield
    finally:
        accelerator.state.deepspeed_plugin.set_deepspeed_weakref()  # back for prepare and checkpoints


@contextlib.contextmanager
def gathered_parameters(accelerator: Accelerator, module: torch.nn.Module):
    """Every rank enters; inside, ``module``'s parameters are whole on every rank (read-only).

    ZeRO-3 keeps 1/N of each parameter per rank; writing a ``save_pretrained`` folder or copying
    weights needs them whole for a moment. Without ZeRO-3 this does nothing."""
    if zero_stage(accelerator) != 3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        yield

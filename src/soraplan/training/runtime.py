"""Process setup shared by the trainers."""

from __future__ import annotations

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

"""Process setup shared by the trainers."""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator


def make_accelerator(mixed_precision: str, **kwargs) -> Accelerator:
    """An Accelerator that also joins several CPU-only processes (torchrun / accelerate launch) into one
    gloo group: without ``cpu=True`` accelerate would run N independent trainings."""
    cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu, **kwargs)

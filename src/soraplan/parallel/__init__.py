"""Parallelism, switched on explicitly: Ulysses sequence parallelism for the transformer, and the
layout of data / sequence / CFG parallel sampling runs."""

from .layout import SamplingLayout, sampling_layout
from .ulysses import UlyssesGroup, enable_sequence_parallel

__all__ = ["SamplingLayout", "UlyssesGroup", "enable_sequence_parallel", "sampling_layout"]

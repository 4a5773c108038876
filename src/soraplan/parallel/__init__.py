"""Parallelism, switched on explicitly: Ulysses sequence parallelism for the transformer."""

from .ulysses import UlyssesGroup, enable_sequence_parallel

__all__ = ["UlyssesGroup", "enable_sequence_parallel"]

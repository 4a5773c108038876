"""Flags that several commands share, defined and checked in one place."""

from __future__ import annotations

from .errors import UserError


def add_cache_threshold(parser) -> None:
    """``--cache_threshold``: step caching (soraplan.acceleration.step_cache) in sample, demo and eval."""
    parser.add_argument("--cache_threshold", type=float, default=0.0, help=(
        "step caching: skip a transformer evaluation while its input changed less than this (accumulated "
        "relative L1) since the last full one; 0 = off, 0.4 ~ 2x fewer evaluations"))


def check_cache_threshold(args) -> None:
    """Before the model loads: a negative threshold is a user mistake, not a traceback."""
    if args.cache_threshold < 0:
        raise UserError(f"--cache_threshold must be >= 0, got {args.cache_threshold}")

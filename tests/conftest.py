"""Shared test helpers: where the reference fixtures live, and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = Path(os.environ.get("SORAPLAN_PARITY_DIR", ROOT.parent / "shared" / "parity"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def require_parity_dir() -> Path:
    """The reference fixtures; a hard failure in CI (they must be there), a skip elsewhere."""
    if PARITY_DIR.is_dir():
        return PARITY_DIR
    message = f"parity fixtures not found at {PARITY_DIR} (set SORAPLAN_PARITY_DIR)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def randomize_(model: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Overwrite every trainable parameter with N(0, std²), so zero-initialised branches are active in tests.

    Frozen parameters (the WF-VAE's Haar filters) keep their constructed values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model

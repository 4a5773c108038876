"""Ulysses sequence parallelism across real processes (torchrun, gloo on CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from soraplan.models import build_inpaint

WORKER = Path(__file__).with_name("sp_worker.py")


@pytest.mark.parametrize("frames", [4, 6])
def test_two_ranks_equal_one_device_forward_and_gradients(frames):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER), str(frames)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("forward max err") == 2 and result.stdout.count("gradient max err") == 2


def test_heads_must_split_evenly():
    from soraplan.parallel import enable_sequence_parallel

    class FakeGroup:
        world = 4

    with pytest.raises(ValueError, match="2 attention heads cannot be split over 4 ranks"):
        enable_sequence_parallel(build_inpaint("tiny"), FakeGroup())

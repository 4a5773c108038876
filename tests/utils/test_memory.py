"""keep_freed_memory: a transformer forward stops page-faulting its activations back in."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    from soraplan.models import build_t2v
    from soraplan.utils.memory import keep_freed_memory

    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    torch.manual_seed(0)
    model = build_t2v("tiny", num_layers=4, num_attention_heads=2, attention_head_dim=48,
                      cross_attention_dim=96).eval()
    inputs = dict(hidden_states=torch.randn(2, 8, 9, 32, 48), timestep=torch.tensor([10.0, 10.0]),
                  encoder_hidden_states=torch.randn(2, 1, 8, 32))
    with torch.no_grad():
        first = model(**inputs).sample
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            out = model(**inputs).sample
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) // 3
    print(json.dumps({"applied": applied, "faults": faults, "same": bool(torch.equal(first, out))}))
    """
)


def forward_faults(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_removes_page_faults_of_a_forward():
    default, kept = forward_faults("default"), forward_faults("keep")
    assert kept["applied"] is True
    assert kept["same"] and default["same"]
    # 3456 tokens x 96 channels x batch 2: each activation is 2.6 MB, hundreds of them per forward
    assert kept["faults"] <= max(200, default["faults"] // 10), (default, kept)

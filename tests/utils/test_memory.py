"""keep_freed_memory: a freed 48 MB block (above glibc's 32 MB ceiling for serving blocks from its heap)
is reused by the next allocation instead of coming back as fresh, page-faulted memory."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import ctypes, json, resource, sys
    from soraplan.utils.memory import keep_freed_memory

    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    size = 48 << 20
    faults = []
    for _ in range(4):  # allocate, touch every page, free: what an activation's life looks like
        block = libc.malloc(size)
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        libc.memset(block, 1, size)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
        libc.free(block)
    print(json.dumps({"applied": applied, "faults": faults}))
    """
)


def block_faults(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_reuses_freed_blocks_instead_of_faulting_them_back_in():
    pages = (48 << 20) // 4096
    default, kept = block_faults("default"), block_faults("keep")
    assert kept["applied"] is True
    assert all(f >= pages // 2 for f in default["faults"]), default  # every round: fresh pages
    assert kept["faults"][0] >= pages // 2 and all(f <= 16 for f in kept["faults"][1:]), kept  # reused

"""A process-level CPU memory setting: keep freed memory in the process for reuse.

glibc's malloc serves blocks above 128 KiB (adaptively up to 32 MiB) with fresh ``mmap`` calls and
hands the top of its heap back to the kernel as soon as a few MiB there are free. A transformer frees
and re-allocates activation-sized blocks hundreds of times per forward pass, so on CPU those blocks
come back as new pages that the kernel must fault in and zero every time: 0.09-0.17 million page
faults per forward of the 32-layer bench model at 2.5k tokens on the 2-core bench machine. Raising the
two thresholds keeps freed blocks in the process, where the next tensor reuses them. The cost: resident
memory stays at its high-water mark instead of shrinking between ops; the time it saves varied between
runs there (README, "Performance"), hence opt-in.

This is a choice for a whole process, so the library never makes it on its own: the ``soraplan``
command makes it at start-up when ``SORAPLAN_KEEP_FREED_MEMORY=1``, and a Python program can call
:func:`keep_freed_memory` itself.
"""

from __future__ import annotations

import ctypes
import platform
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc reuse freed blocks up to ``mmap_threshold`` bytes and keep up to ``trim_threshold``
    bytes of free heap. True when applied; False (nothing changed) on other C libraries or systems."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))

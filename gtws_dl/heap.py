"""Handing freed memory back to the operating system between the stages of one process.

A reconstruction frees its tiles, state buffers and read blocks when it ends, but glibc keeps much of the freed
heap mapped (arenas of the reader and prefetch threads), so a publication that follows in the same process
starts gigabytes higher than in a fresh one (2.7 vs 0.6 GB on the global 0.25 deg twin, 2026-12-03).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_memory() -> bool:
    """Collect garbage, then return the free heap to the OS (``malloc_trim(0)``, glibc only); True if trimmed."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return False
    return bool(trim(0))

"""Keep freed memory for reuse in the server process (glibc's allocator, Linux).

A review request handles several arrays of a photo's size (a 7-megapixel label is 27 MB of
float32). By default glibc gives each such array fresh pages from the system (``mmap``) and
returns them when freed, and a request thread gets its own heap (an *arena*). Mapping fresh
pages costs a page fault per 4 KiB; on this project's VM that was 0.2-0.9 s per 27 MB array
(``docs/benchmarks.md``, review section), against about 5 ms to reuse memory already mapped.

:func:`keep_freed_memory` asks glibc (``mallopt``) for one heap shared by all threads, arrays up
to 32 MB (its largest setting) from that heap, and freed memory kept rather than given back.
The process then holds its peak heap; a server is sized for its peak anyway. It is called once,
when the server starts (``DEPTHWEB_KEEP_FREED_MEMORY``), never on import; elsewhere than
glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD = 32 * 1024 * 1024
"""Arrays up to this size come from the heap (glibc's largest allowed value on 64-bit)."""
TRIM_THRESHOLD = 2**31 - 1
"""Freed memory at the top of the heap is returned to the system only beyond this (2 GiB)."""


def keep_freed_memory() -> bool:
    """Apply the settings above; returns whether glibc accepted all of them."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    wanted = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
              (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    ok = all(mallopt(param, value) == 1 for param, value in wanted)
    log.info("allocator: freed memory kept for reuse (%s)", "on" if ok else "not supported")
    return ok

"""``depthweb.server.memory``: with freed memory kept, a 27 MB array freed by a request thread
stays in the process's heap for the next request (by default glibc hands it back to the system
and the next array faults in fresh pages). Each case runs in a fresh interpreter: the setting is
process-wide and must come before threads start."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

CHILD = textwrap.dedent("""
    import ctypes, json, sys, threading
    import numpy as np
    from depthweb.server.memory import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    applied = keep_freed_memory() if sys.argv[1] == "kept" else None
    seen = {}

    def request():  # a handler thread: one label-sized array, used, then freed
        a = np.ones((2268, 3024), np.float32)
        seen["in_use_mmapped"] = libc.mallinfo2().hblkhd
        del a

    t = threading.Thread(target=request)
    t.start()
    t.join()
    info = libc.mallinfo2()  # the calling thread's arena: the main one
    print(json.dumps({"applied": applied, "free_in_heap": info.fordblks,
                      "in_use_mmapped": seen["in_use_mmapped"]}))
""")

LABEL_BYTES = 2268 * 3024 * 4


def child(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_freed_label_sized_array_stays_in_the_heap_for_reuse():
    kept = child("kept")
    assert kept["applied"] is True
    assert kept["in_use_mmapped"] < LABEL_BYTES  # the array came from the heap
    assert kept["free_in_heap"] >= LABEL_BYTES  # and its memory stays there, freed


def test_by_default_glibc_maps_it_and_gives_it_back():
    default = child("default")
    assert default["in_use_mmapped"] >= LABEL_BYTES  # fresh pages from the system
    assert default["free_in_heap"] < LABEL_BYTES  # handed back when freed

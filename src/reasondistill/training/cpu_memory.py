"""CPU training: large freed tensors go back to the system, so peak RSS follows live memory.

The chunked loss (``loss/chunked.py``) allocates and frees a ``chunk_tokens x vocab`` float32 block
several times per chunk, hundreds of times per step. glibc's malloc serves a block with ``mmap``
(and returns it on free) only above its mmap threshold, and that threshold is dynamic: each freed
mmapped block raises it to its own size, up to 32 MiB. Blocks just under 32 MiB (256 tokens x a
32k vocabulary: 32.8 MB) therefore moved onto the heap after the first few, where they fragment
and are not trimmed: the memory bench measured 4.1 GB peak RSS at vocabulary 32k x sequence 2048
for about 0.7 GB of live tensors, while 152k (155 MB blocks, always mmapped) peaked at 1.2 GB.
Setting the threshold explicitly turns the dynamic adjustment off; at 4 MiB every vocabulary-sized
block is mmapped and returned at once, and small tensors stay on the heap. It is what
``MALLOC_MMAP_THRESHOLD_=4194304`` does, so a threshold the user set in the environment is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3           # mallopt parameter (glibc malloc.h)
MMAP_THRESHOLD = 4 * 2**20      # bytes: blocks from this size up are mmapped and returned on free
_done = False


def fix_mmap_threshold() -> bool:
    """Set glibc's mmap threshold once per process (Linux/glibc only; a no-op elsewhere or when
    ``MALLOC_MMAP_THRESHOLD_`` is set). Returns whether the threshold is now fixed."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: no mallopt, nothing to fix
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return _done

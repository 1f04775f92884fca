"""One memory-allocation regime for every process that trains: the same speed in the profile as in
the job.

glibc's ``malloc`` serves a block of 128 KB or more with a fresh ``mmap`` and returns it to the
kernel on ``free``, until the process frees such a block: then it raises that threshold to the
block's size (up to 32 MB), and blocks below it are reused from the heap. A training step
allocates and frees its activations every iteration (1 MB each for a CIFAR ResNet at batch 16),
so a process that never freed a large block pays page faults for every one of them. Measured on
the local platform at 1,769 MB (resnet8, batch 16): 22-24 ms per iteration in a fresh process,
17.5-18 ms after freeing one large array, as a worker does when it decodes its partition. The
profiler's function, which decodes only a small sample, timed the slow regime and the job ran the
fast one: the plan's loop was predicted 15-20 % long (docs/optimizer.md, "Whole-job prediction").

``steady_allocator`` fixes the two thresholds where glibc's own adjustment would end (32 MB for
``mmap``, twice that for giving the heap's top back), so every function trains in the fast
regime from its first iteration, whatever it did before. It changes only how memory is reused,
not how much a process may use; resident memory may stay up to the trim threshold above what is
live. Elsewhere than glibc (macOS, musl) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest dynamic threshold on 64-bit
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES  # what glibc pairs with it


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library this process already runs on: the symbols of the process itself, so no file
    is looked up. Not ``ctypes.util.find_library("c")``: on Linux it forks ``ldconfig -p``, and
    a fork of a 300 MB worker is, for an instant, a second 300 MB process in its tree, which the
    local platform (summing the tree's resident memory) once killed as out of memory at 512 MB."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None  # not glibc: its mallopt (if any) may mean something else
    return libc


def steady_allocator() -> bool:
    """Fix glibc's malloc thresholds for this process (idempotent); False where it cannot."""
    libc = _libc()
    if libc is None:
        log.debug("not glibc: the malloc thresholds are left as they are")
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not ok:
        log.warning("glibc refused the malloc thresholds: training may run in the slow regime")
    return ok

"""The training processes' malloc regime (fasdl.training.allocator)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fasdl.training import allocator

GLIBC = allocator._libc() is not None

# In a fresh process: how many bytes of mmapped blocks a 4 MB array adds (glibc's mallinfo2).
_PROBE = """
import ctypes, ctypes.util, sys
import numpy as np
from fasdl.training.allocator import steady_allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "abcdefghij"]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
if sys.argv[1] == "steady":
    assert steady_allocator()
before = libc.mallinfo2().e  # hblkhd: bytes in mmapped blocks
a = np.ones(4 * 1024 * 1024 // 8)
print(libc.mallinfo2().e - before)
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only (Linux)")
@pytest.mark.parametrize("regime,mmapped", [("fresh", True), ("steady", False)])
def test_a_4_mb_block_comes_from_the_heap_once_the_allocator_is_steady(regime, mmapped):
    """A fresh process maps every block of 128 KB or more anew (and pays its page faults each
    time it comes back); after ``steady_allocator`` a 4 MB block is served from the heap."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, regime], capture_output=True, text=True, check=True
    )
    grew = int(out.stdout.strip())
    assert (grew >= 4 * 1024 * 1024) is mmapped, out


def test_it_starts_no_process():
    """A worker calls it first thing: a fork of a worker doubles its tree's resident memory for
    an instant (``ctypes.util.find_library`` forks ``ldconfig``), which the local platform's
    memory limit once took for running out of memory."""
    code = (
        "import os, subprocess, ctypes.util\n"
        "def no(*a, **k): raise AssertionError('a process was started')\n"
        "subprocess.Popen = no; os.fork = no; os.posix_spawn = no; ctypes.util.find_library = no\n"
        "from fasdl.training.allocator import steady_allocator\n"
        "print(steady_allocator())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(GLIBC)


def test_steady_allocator_is_idempotent_and_says_where_it_cannot():
    assert allocator.steady_allocator() is GLIBC
    assert allocator.steady_allocator() is GLIBC

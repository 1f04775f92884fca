"""The local platform's reaper: kills a platform's functions once the process that owns it is gone.

Started by ``local.py`` as ``python -I .../_reaper.py`` (a script, not ``-m``: it imports nothing
but the standard library), in a session of its own, with the read end of a pipe as its stdin. The
owner keeps the only write end and writes one line per change:

- ``+PGID``: a function's process group was started;
- ``-PGID``: that group has been killed and is about to be reaped (its id may be reused after).

When the pipe reaches end-of-file, the owner has closed it (an orderly shutdown: nothing is left
registered) or died, by whatever signal: the kernel closes a dead process's descriptors. The
reaper then sends ``SIGKILL`` to every group still registered (which ends stopped processes too:
the CPU throttle may have paused them with ``SIGSTOP``) and exits.

The reaper is never throttled (it is in no function's process group), needs no timer, and works
wherever there are pipes and process groups (Linux and macOS).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def parse(lines: list[bytes], groups: set[int]) -> None:
    """Apply the owner's ``+PGID`` / ``-PGID`` lines to ``groups`` (anything else is ignored)."""
    for line in lines:
        line = line.strip()
        if len(line) < 2 or line[:1] not in (b"+", b"-") or not line[1:].isdigit():
            continue
        pgid = int(line[1:])
        if pgid <= 1:  # never a group a function leads; killpg(0 or 1, ...) would be a disaster
            continue
        if line[:1] == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)


def main() -> int:
    # A terminal's Ctrl-C or hang-up is for the owner: the reaper outlives it to clean up after it.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    buffer = b""
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        *lines, buffer = (buffer + chunk).split(b"\n")
        parse(lines, groups)
    for pgid in groups:
        with contextlib.suppress(OSError):  # already gone
            os.killpg(pgid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading one function's process tree: CPU time, resident memory, its peak; stopping and killing it.

The function's process leads its own session (and process group), so one ``killpg`` stops,
resumes or kills everything it started. CPU time and memory are summed over the tree.

Memory is the leader's resident size plus the pages only each descendant holds (its unique set
size): what a cgroup would charge, where a fork's shared pages count once.

On Linux the leader's CPU time comes from its process CPU clock (``clock_gettime`` on the clock
id the kernel derives from the pid: nanosecond precision, every thread, living or exited) and its
peak memory from ``VmHWM`` in ``/proc/<pid>/status``, which catches peaks between two polls.
Elsewhere (macOS) psutil's ``cpu_times`` and sampled ``memory_info().rss`` stand in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import psutil

MB = 1024 * 1024
_LINUX = sys.platform.startswith("linux")
_CPUCLOCK_SCHED = 2  # the kernel's process CPU clock that counts scheduled run time


def _process_cpu_clock(pid: int) -> int:
    """The clock id of a process's CPU-time clock (glibc's MAKE_PROCESS_CPUCLOCK)."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


def _linux_cpu_s(pid: int) -> float | None:
    try:
        return time.clock_gettime_ns(_process_cpu_clock(pid)) / 1e9
    except OSError:
        return None


def _linux_status(pid: int) -> tuple[float, float, int] | None:
    """(VmRSS MB, VmHWM MB, threads), or None once the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return None
    rss_kb = hwm_kb = None
    threads = 1
    for line in text.splitlines():
        if line.startswith(b"VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith(b"VmHWM:"):
            hwm_kb = int(line.split()[1])
        elif line.startswith(b"Threads:"):
            threads = int(line.split()[1])
    if rss_kb is None or hwm_kb is None:
        return None
    return rss_kb / 1024, hwm_kb / 1024, threads


def _psutil_cpu_s(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
    except (psutil.Error, OSError):
        return None
    cpu_s: float = t.user + t.system
    return cpu_s


def _psutil_uss_mb(proc: psutil.Process) -> float | None:
    """The pages only ``proc`` holds (unique set size), its resident size where that is unknown."""
    try:
        uss: int = proc.memory_full_info().uss
    except (psutil.Error, OSError, AttributeError):
        return _psutil_rss_mb(proc)
    return uss / MB


def _psutil_rss_mb(proc: psutil.Process) -> float | None:
    try:
        rss: int = proc.memory_info().rss
    except (psutil.Error, OSError):
        return None
    return rss / MB


def _linux_children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` from /proc (every thread's list), or None where unsupported."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                children.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return None  # the kernel does not offer the children file
        except OSError:
            continue
    return children


def descendant_pids(pid: int) -> list[int]:
    """Every process below ``pid``: cheap on Linux (``/proc/.../children``), a process scan elsewhere."""
    if _LINUX:
        found: list[int] = []
        frontier = [pid]
        while frontier:
            children = _linux_children(frontier.pop())
            if children is None:
                break
            found.extend(children)
            frontier.extend(children)
        else:
            return found
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except (psutil.Error, OSError):
        return []


def self_peak_rss_mb() -> float:
    """This process's own peak resident memory, as the function reports it at exit.

    On Linux ``ru_maxrss`` is useless here: after fork/vfork + exec it starts from the parent's
    high-water mark, so a child of a 600 MB parent reports 600 MB. ``VmHWM`` is the new image's own.
    """
    if _LINUX:
        status = _linux_status(os.getpid())
        if status is not None:
            return status[1]
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / MB if sys.platform == "darwin" else maxrss / 1024


class ProcessTree:
    """A function's process (the leader of its own process group) and its descendants."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.leader = psutil.Process(pid)
        self.descendants: dict[int, psutil.Process] = {}
        # Last CPU reading of every process ever seen, so exited descendants keep their share.
        self._cpu_seen: dict[int, float] = {pid: 0.0}
        self.peak_rss_mb = 0.0
        self.threads = 1  # threads of the tree at the last memory reading

    def refresh_descendants(self) -> None:
        """Find processes the function started (costs a scan of the process table: call rarely)."""
        fresh: dict[int, psutil.Process] = {}
        for pid in descendant_pids(self.pid):
            known = self.descendants.get(pid)
            if known is not None:
                fresh[pid] = known
                continue
            with contextlib.suppress(psutil.Error, OSError):
                fresh[pid] = psutil.Process(pid)
        self.descendants = fresh

    def cpu_s(self) -> float:
        """CPU seconds used by the tree so far (never decreases)."""
        leader = _linux_cpu_s(self.pid) if _LINUX else _psutil_cpu_s(self.leader)
        if leader is not None:
            self._cpu_seen[self.pid] = max(self._cpu_seen[self.pid], leader)
        for pid, proc in self.descendants.items():
            cpu = _psutil_cpu_s(proc)
            if cpu is not None:
                self._cpu_seen[pid] = max(self._cpu_seen.get(pid, 0.0), cpu)
        return sum(self._cpu_seen.values())

    def rss_mb(self) -> float:
        """Resident memory of the tree now; also raises ``peak_rss_mb``."""
        total = 0.0
        threads = 1
        if _LINUX:
            status = _linux_status(self.pid)
            if status is not None:
                total += status[0]
                self.peak_rss_mb = max(self.peak_rss_mb, status[1])
                threads = status[2]
        else:
            total += _psutil_rss_mb(self.leader) or 0.0
            with contextlib.suppress(psutil.Error, OSError):
                threads = self.leader.num_threads()
        self.threads = threads + len(self.descendants)
        # A descendant adds the pages only it holds: a fork shares its parent's pages until it
        # writes them, and a memory limit (Lambda's cgroup) charges a page once. Its resident
        # size would count the parent's pages twice (a fork of a 300 MB worker, for an instant,
        # once made a 512 MB function look 600 MB).
        for proc in self.descendants.values():
            total += _psutil_uss_mb(proc) or 0.0
        self.peak_rss_mb = max(self.peak_rss_mb, total)
        return total

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no error if it is already gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

"""The local platform: a small Lambda on this machine, without root, cgroups or containers.

Each invocation is a fresh process (``python -m fasdl.platform._runner``) in its own session.
One supervisor thread watches every running invocation and enforces Lambda's rules:

- CPU in proportion to memory (1,769 MB = 1 vCPU): duty cycling with SIGSTOP/SIGCONT on the
  process group against a per-period CPU quota (``throttle.CpuBudget``);
- memory: resident memory of the process tree over the memory size -> killed, OUT_OF_MEMORY;
- timeout: wall clock from the start (stopped time included, as on Lambda) -> killed, TIMED_OUT;
- concurrency: invocations beyond the limit wait PENDING in a FIFO queue;
- cancel: ``Platform.cancel`` kills the process group -> CANCELLED, billed for the time it ran.

A reaper process (``_reaper.py``), started with the first invocation, kills every function's
process group once the process that owns the platform is gone, whatever killed it: the owner
tells it each group it starts over a pipe, and the pipe's end-of-file is the owner's death.

Billed duration is from just before the process is started to the moment its exit is seen, so it
includes interpreter start and imports, as Lambda has billed its INIT phase since 2025.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasdl.errors import FasdlError
from fasdl.platform.base import Invocation, Platform, State
from fasdl.platform.proctree import ProcessTree
from fasdl.platform.throttle import DEFAULT_PERIOD_S, CpuBudget
from fasdl.validate import finite_number, whole_number

log = logging.getLogger(__name__)

MAX_SLEEP_S = 0.05  # the supervisor looks at every process at least this often
TREE_REFRESH_S = 1.0  # how often to look for processes a function started
REAP_POLL_S = 0.001  # once its exit pipe has closed, a process is a zombie within microseconds
KILLED_POLL_S = 0.01
EXITING_WINDOW_S = 0.1
SHUTDOWN_JOIN_S = 10.0
CANCEL_WAIT_S = 30.0  # cancel() waits this long for the killed function to be reaped
REAPER_SCRIPT = Path(__file__).with_name("_reaper.py")
REAPER_EXIT_WAIT_S = 10.0
LOG_TAIL_BYTES = 2000
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


# The write ends of the reapers' pipes of this process. A process forked from the owner (os.fork,
# multiprocessing's "fork") closes them at once: a copy kept open in a child that outlives the
# owner would hide the owner's death from the reaper. (exec'd children never get them: the fds
# are not inheritable and subprocess closes the others.)
_REAPER_WRITE_FDS: set[int] = set()


def _close_reaper_pipes_in_child() -> None:
    for fd in list(_REAPER_WRITE_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _REAPER_WRITE_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_reaper_pipes_in_child)


class _Reaper:
    """The owner's side of the reaper process (``_reaper.py``): register and forget process groups.

    The lines are written without blocking from the supervisor thread: a reaper that died or
    stopped reading costs a warning, not a stuck supervisor (each function's own watchdog still
    ends it if the owner dies while it runs).
    """

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        _REAPER_WRITE_FDS.add(write_fd)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", str(REAPER_SCRIPT)],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # out of the owner's group: a Ctrl-C or killpg spares it
            )
        except BaseException:
            _REAPER_WRITE_FDS.discard(write_fd)
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        os.set_blocking(write_fd, False)
        self._write_fd: int | None = write_fd
        self._lock = threading.Lock()
        self._warned = False

    def register(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        """The group is dead and about to be reaped (after which its id may be reused)."""
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            if self._write_fd not in _REAPER_WRITE_FDS:  # closed, or this is a forked copy
                return
            assert self._write_fd is not None
            try:
                os.write(self._write_fd, line.encode())  # < PIPE_BUF: all or nothing
            except OSError as e:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "the local platform's reaper (pid %d) cannot be told about its "
                        "functions (%s): if this process is killed, they end only by their "
                        "own watchdog",
                        self.proc.pid,
                        e,
                    )

    def close(self) -> None:
        """End the reaper: it kills the groups still registered (none after an orderly shutdown)."""
        with self._lock:
            write_fd, self._write_fd = self._write_fd, None
        if write_fd not in _REAPER_WRITE_FDS:  # closed, or this is a forked copy: not ours
            return
        assert write_fd is not None
        _REAPER_WRITE_FDS.discard(write_fd)
        os.close(write_fd)
        try:
            self.proc.wait(REAPER_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning(
                "the local platform's reaper (pid %d) did not exit within %.0f s",
                self.proc.pid,
                REAPER_EXIT_WAIT_S,
            )


class OversubscriptionWarning(RuntimeWarning):
    """The functions running at once ask for more vCPUs than the machine has."""


def machine_cpu_count() -> int:
    """The cores this process may run on (its affinity where the OS says, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass
class _Running:
    """The supervisor's view of one running invocation (touched only by the supervisor thread)."""

    inv: Invocation
    proc: subprocess.Popen[bytes]
    tree: ProcessTree
    workdir: Path
    exit_fd: int
    start_monotonic: float
    deadline_monotonic: float
    budget: CpuBudget | None
    next_cpu_check: float = 0.0
    next_memory_check: float = 0.0
    next_tree_refresh: float = 0.0
    stopped: bool = False
    exit_seen_at: float | None = None  # when its exit pipe closed
    kill_reason: State | None = None
    kill_detail: str = ""
    end_monotonic: float | None = None  # when the exit was seen
    exit_status_lost: bool = False
    reaped_status: int | None = None  # where the exit could only be seen by reaping (macOS)
    rusage: Any = None

    @property
    def outcome_path(self) -> Path:
        return self.workdir / "outcome.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "output.log"


class LocalPlatform(Platform):
    """Each invocation a fresh process, with Lambda's CPU share, memory limit and timeout.

    ``concurrency``: invocations running at once; more wait in a FIFO queue.
    ``warn_oversubscription``: warn once when running functions ask for more vCPUs than
    ``cpu_count`` (default: the cores this process may use), because timings stop being faithful.
    ``cpu_period_s``: the duty-cycling period. ``memory_poll_s``: how often memory is read.
    ``log_dir``: keep each invocation's stdout/stderr there as ``<request_id>.log``.
    """

    name = "local"

    def __init__(
        self,
        *,
        concurrency: int = 1000,
        warn_oversubscription: bool = True,
        cpu_count: int | None = None,
        cpu_period_s: float = DEFAULT_PERIOD_S,
        memory_poll_s: float = 0.05,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency)
        if cpu_count is not None:
            whole_number(cpu_count, "cpu_count", minimum=1)
        finite_number(cpu_period_s, "cpu_period_s", minimum=0.001, maximum=1.0, unit="s")
        finite_number(memory_poll_s, "memory_poll_s", minimum=0.001, maximum=1.0, unit="s")
        self.cpu_count = cpu_count or machine_cpu_count()
        self.warn_oversubscription = warn_oversubscription
        self.cpu_period_s = cpu_period_s
        self.memory_poll_s = memory_poll_s
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[Invocation, str]] = collections.deque()
        self._closing = False
        self._supervisor_stopped = False
        self._warned = False
        self._thread: threading.Thread | None = None
        self._root: Path | None = None
        self._reaper: _Reaper | None = None
        # Cancels for the supervisor (or for ``_start``, if it comes first), by request id.
        self._cancels: dict[str, tuple[Invocation, str]] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        atexit.register(self.shutdown)

    # ---- the caller's side -------------------------------------------------------------------

    def _start(self, inv: Invocation, target: str, body: bytes) -> None:
        with self._lock:
            if self._closing or self._supervisor_stopped:
                inv.finish(State.FAILED, error="the platform is shut down")
                raise FasdlError(f"invocation of {inv.handler!r}: the platform is shut down")
            cancelled = self._cancels.pop(inv.request_id, None)
            if cancelled is not None:  # cancelled before it got here
                inv.finish(State.CANCELLED, error=cancelled[1])
                return
            if self._thread is None:
                if self.log_dir is not None:
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                self._root = Path(tempfile.mkdtemp(prefix="fasdl-local-"))
                try:
                    self._reaper = _Reaper()
                except Exception:  # the functions still have their own watchdog
                    log.warning(
                        "could not start the local platform's reaper: if this process is "
                        "killed, its functions end only by their own watchdog",
                        exc_info=True,
                    )
                self._thread = threading.Thread(
                    target=self._supervise, name="fasdl-local-supervisor", daemon=True
                )
                self._thread.start()
            self._pending.append((inv, target))
        self._wake()

    def _cancel(self, inv: Invocation, reason: str) -> None:
        """A pending invocation never starts; a running one's process group is killed and reaped
        by the supervisor before this returns (``WaitTimeout`` if that takes ``CANCEL_WAIT_S``)."""
        with self._lock:
            queued = next((i for i, (p, _) in enumerate(self._pending) if p is inv), None)
            if queued is not None:
                del self._pending[queued]
            else:
                self._cancels[inv.request_id] = (inv, reason)
        if queued is not None:
            inv.finish(State.CANCELLED, error=reason)
            return
        self._wake()
        inv.wait(CANCEL_WAIT_S)

    def shutdown(self) -> None:
        """Kill every running invocation, fail the pending ones, stop the supervisor."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            pending = list(self._pending)
            self._pending.clear()
        atexit.unregister(self.shutdown)
        for inv, _ in pending:
            inv.finish(State.FAILED, error="the platform shut down before the invocation started")
        self._wake()
        if self._thread is not None:
            self._thread.join(SHUTDOWN_JOIN_S)
        # Every function has been reaped, so the reaper has nothing left to kill; if the
        # supervisor is stuck, the reaper kills what is still registered.
        if self._reaper is not None:
            self._reaper.close()
        if self._thread is not None and self._thread.is_alive():
            log.warning(
                "the local platform's supervisor did not stop within %.0f s", SHUTDOWN_JOIN_S
            )
            return
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # ---- the supervisor thread ---------------------------------------------------------------

    def _supervise(self) -> None:
        running: list[_Running] = []
        try:
            while True:
                with self._lock:
                    closing = self._closing
                    to_start: list[tuple[Invocation, str]] = []
                    while self._pending and len(running) + len(to_start) < self.concurrency:
                        to_start.append(self._pending.popleft())
                    cancels, self._cancels = self._cancels, {}
                if closing and not running and not to_start:
                    return
                for inv, target in to_start:
                    cancelled = cancels.pop(inv.request_id, None)
                    if cancelled is not None:  # cancelled as it left the queue: never started
                        inv.finish(State.CANCELLED, error=cancelled[1])
                        continue
                    job = self._spawn(inv, target)
                    if job is not None:
                        running.append(job)
                        self._check_oversubscription(running)
                if cancels:
                    self._apply_cancels(cancels, running)
                next_wake = time.monotonic() + MAX_SLEEP_S
                for job in list(running):
                    try:
                        wake_at = self._service(job, closing)
                    except Exception as e:  # a supervisor bug must not leave the invocation hanging
                        log.exception("supervising invocation %s failed", job.inv.request_id)
                        job.tree.kill()
                        self._reap(job, blocking=True)
                        self._conclude(
                            job, State.FAILED, f"the platform's supervisor failed: {e!r}"
                        )
                        wake_at = None
                    if wake_at is None:
                        running.remove(job)
                    else:
                        next_wake = min(next_wake, wake_at)
                self._sleep_until(next_wake)
        finally:
            # Only reached with work left if the loop itself broke: never leave it hanging.
            with self._lock:
                self._supervisor_stopped = True
                pending = list(self._pending)
                self._pending.clear()
            for inv, _ in pending:
                inv.finish(State.FAILED, error="the platform's supervisor stopped")
            for job in running:
                job.tree.kill()
                try:
                    self._reap(job, blocking=True)
                except Exception:  # keep concluding the others; say which one could not be reaped
                    log.warning("reaping invocation %s failed", job.inv.request_id, exc_info=True)
                if not job.inv.done():
                    self._conclude(job, State.FAILED, "the platform's supervisor stopped")

    def _apply_cancels(
        self, cancels: dict[str, tuple[Invocation, str]], running: list[_Running]
    ) -> None:
        by_id = {job.inv.request_id: job for job in running}
        keep: dict[str, tuple[Invocation, str]] = {}
        for request_id, (inv, reason) in cancels.items():
            job = by_id.get(request_id)
            if job is not None:
                if job.kill_reason is None:  # not already being killed (timeout, memory)
                    self._kill(job, State.CANCELLED, reason)
            elif not inv.done():  # not yet through ``_start``: it finishes it there
                keep[request_id] = (inv, reason)
        if keep:
            with self._lock:
                self._cancels.update(keep)

    def _sleep_until(self, wake_at: float) -> None:
        timeout = max(0.0, wake_at - time.monotonic())
        for key, _ in self._selector.select(timeout):
            fd = int(key.fd)
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if key.data is not None and not data:  # a function's exit pipe closed: it is ending
                key.data.exit_seen_at = time.monotonic()
                self._selector.unregister(fd)

    def _spawn(self, inv: Invocation, target: str) -> _Running | None:
        try:
            return self._try_spawn(inv, target)
        except Exception as e:  # no disk for the spec, no fds, no processes left
            log.exception("starting invocation %s failed", inv.request_id)
            inv.ended_at = time.time()
            inv.finish(State.FAILED, error=f"could not start the function's process: {e!r}")
            return None

    def _try_spawn(self, inv: Invocation, target: str) -> _Running:
        assert self._root is not None
        workdir = Path(tempfile.mkdtemp(prefix=f"{inv.request_id[:8]}-", dir=self._root))
        threads = max(1, math.ceil(inv.vcpus))
        spec = {
            "target": target,
            "function_name": inv.handler,
            "request_id": inv.request_id,
            "memory_mb": inv.memory_mb,
            "vcpus": inv.vcpus,
            # a share below the machine's is duty-cycled in these periods (``throttle``)
            "cpu_period_s": self.cpu_period_s if inv.vcpus < self.cpu_count else None,
            "parent_pid": os.getpid(),
            "sys_path": sys.path,
            "outcome_path": str(workdir / "outcome.json"),
            "event": inv.payload,
        }
        env = dict(os.environ)
        env.update({var: str(threads) for var in THREAD_ENV_VARS})
        env["AWS_LAMBDA_FUNCTION_NAME"] = inv.handler
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(inv.memory_mb)
        exit_r, exit_w = os.pipe()
        try:
            with open(workdir / "output.log", "wb") as out:
                inv.started_at = time.time()
                start = time.monotonic()
                spec["deadline_epoch"] = inv.started_at + inv.timeout_s
                (workdir / "spec.json").write_text(json.dumps(spec))
                proc = subprocess.Popen(
                    [sys.executable, "-m", "fasdl.platform._runner", str(workdir / "spec.json")],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(exit_w,),
                    start_new_session=True,
                    env=env,
                )
        except BaseException:
            os.close(exit_r)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            os.close(exit_w)
        if self._reaper is not None:
            self._reaper.register(proc.pid)  # its process group: it leads its own session
        inv.state = State.RUNNING
        budget = None
        # With a whole machine's share or more there is nothing to cap.
        if inv.vcpus < self.cpu_count:
            budget = CpuBudget(inv.vcpus, now=start, cpu_s=0.0, period_s=self.cpu_period_s)
        job = _Running(
            inv=inv,
            proc=proc,
            tree=ProcessTree(proc.pid),
            workdir=workdir,
            exit_fd=exit_r,
            start_monotonic=start,
            deadline_monotonic=start + inv.timeout_s,
            budget=budget,
            next_tree_refresh=start + 0.2,
        )
        self._selector.register(exit_r, selectors.EVENT_READ, job)
        return job

    def _check_oversubscription(self, running: list[_Running]) -> None:
        if not self.warn_oversubscription or self._warned:
            return
        asked = sum(job.inv.vcpus for job in running)
        if asked > self.cpu_count:
            self._warned = True
            warnings.warn(
                f"functions running at once ask for {asked:.2f} vCPUs but this machine has "
                f"{self.cpu_count}: they share the cores, so timings are no longer faithful to Lambda",
                OversubscriptionWarning,
                stacklevel=1,
            )

    def _service(self, job: _Running, closing: bool) -> float | None:
        """Look after one running invocation. Returns when to look again, or None once it is done."""
        now = time.monotonic()
        if self._reap(job, blocking=False):
            self._finish(job, now)
            return None
        if job.kill_reason is not None:  # dying: its exit pipe closes once its memory is freed
            return now + (REAP_POLL_S if job.exit_seen_at is not None else KILLED_POLL_S)
        if closing:
            self._kill(job, State.FAILED, "the platform shut down while the invocation ran")
            return now + KILLED_POLL_S
        if now >= job.deadline_monotonic:
            elapsed = now - job.start_monotonic
            self._kill(
                job,
                State.TIMED_OUT,
                f"Task timed out after {elapsed:.2f} seconds (timeout {job.inv.timeout_s:g} s)",
            )
            return now + KILLED_POLL_S
        if now >= job.next_tree_refresh:
            job.tree.refresh_descendants()
            job.next_tree_refresh = now + TREE_REFRESH_S
        if now >= job.next_memory_check:
            job.tree.rss_mb()
            job.next_memory_check = now + self.memory_poll_s
            if job.tree.peak_rss_mb > job.inv.memory_mb:
                self._kill(
                    job,
                    State.OUT_OF_MEMORY,
                    self._oom_message(job.tree.peak_rss_mb, job.inv.memory_mb),
                )
                return now + KILLED_POLL_S
        if job.budget is not None and now >= job.next_cpu_check:
            max_rate = min(job.tree.threads, self.cpu_count)
            decision = job.budget.update(now, job.tree.cpu_s(), max_rate=max_rate)
            if decision.run and job.stopped:
                job.tree.resume()
                job.stopped = False
            elif not decision.run and not job.stopped:
                job.tree.stop()
                job.stopped = True
            job.next_cpu_check = decision.next_check
        wake_at = min(job.deadline_monotonic, job.next_memory_check, job.next_tree_refresh)
        if job.budget is not None:
            wake_at = min(wake_at, job.next_cpu_check)
        if job.exit_seen_at is not None and now - job.exit_seen_at < EXITING_WINDOW_S:
            # Its exit pipe closed: it is ending, reap it as soon as the kernel lets go. (A
            # handler that closed the pipe itself runs on, and is looked after as before.)
            wake_at = min(wake_at, now + REAP_POLL_S)
        return wake_at

    @staticmethod
    def _oom_message(peak_mb: float, memory_mb: int) -> str:
        return f"Runtime exited: out of memory ({peak_mb:.1f} MB resident, over the {memory_mb} MB memory size)"

    def _kill(self, job: _Running, reason: State, detail: str) -> None:
        job.kill_reason = reason
        job.kill_detail = detail
        job.tree.kill()

    def _reap(self, job: _Running, *, blocking: bool) -> bool:
        """Reap the function's process if it has exited; also kill what it left behind."""
        if job.proc.returncode is not None:
            return True
        deadline = time.monotonic() + (SHUTDOWN_JOIN_S if blocking else 0.0)
        while True:
            try:
                exited = self._peek_exit(job)
            except ChildProcessError:  # someone else reaped it
                self._forget(job)
                job.exit_status_lost = True
                job.end_monotonic = time.monotonic()
                job.proc.returncode = 255
                return True
            if exited:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(REAP_POLL_S)
        job.end_monotonic = time.monotonic()
        # Stray descendants die with the invocation, as when a sandbox is reclaimed. Unreaped,
        # the exited leader is a zombie, so its process group id cannot have been reused.
        job.tree.kill()
        self._forget(job)  # before the reaping that frees the group's id for reuse
        if job.reaped_status is None:
            _, job.reaped_status, job.rusage = os.wait4(job.proc.pid, 0)
        job.proc.returncode = os.waitstatus_to_exitcode(job.reaped_status)
        return True

    def _forget(self, job: _Running) -> None:
        if self._reaper is not None:
            self._reaper.forget(job.proc.pid)

    @staticmethod
    def _peek_exit(job: _Running) -> bool:
        """Whether the function's process has exited; not yet reaped where the OS allows."""
        if hasattr(os, "waitid"):  # Linux; CPython offers no waitid on macOS
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, job.proc.pid, flags) is not None
        pid, status, rusage = os.wait4(job.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        job.reaped_status, job.rusage = status, rusage
        return True

    def _finish(self, job: _Running, detected_at: float) -> None:
        """Turn the reaped process and its outcome file into the invocation's final state."""
        inv = job.inv
        end = job.end_monotonic if job.end_monotonic is not None else detected_at
        outcome = self._read_outcome(job)
        peak = max(job.tree.peak_rss_mb, float(outcome.get("peak_rss_mb") or 0.0))
        # ru_maxrss is in bytes on macOS; on Linux it starts from the parent's (see proctree).
        if job.rusage is not None and sys.platform == "darwin":
            peak = max(peak, job.rusage.ru_maxrss / (1024 * 1024))
        inv.peak_memory_mb = peak
        inv.duration_ms = (end - job.start_monotonic) * 1000
        assert inv.started_at is not None
        inv.ended_at = inv.started_at + inv.duration_ms / 1000
        if job.kill_reason is not None:
            self._conclude(job, job.kill_reason, job.kill_detail)
        elif peak > inv.memory_mb:
            # It grew past its memory between two polls: Lambda would have killed it.
            self._conclude(job, State.OUT_OF_MEMORY, self._oom_message(peak, inv.memory_mb))
        elif outcome.get("ok") is True:
            self._conclude(job, State.SUCCEEDED, result=outcome.get("result"))
        elif outcome.get("ok") is False:
            self._conclude(job, State.FAILED, outcome.get("error"), tb=outcome.get("traceback"))
        else:
            self._conclude(job, State.FAILED, self._death_message(job))

    def _read_outcome(self, job: _Running) -> dict[str, Any]:
        try:
            return dict(json.loads(job.outcome_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _death_message(self, job: _Running) -> str:
        code = job.proc.returncode
        if job.exit_status_lost:
            how = "ended (its exit status was lost)"
        elif code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        msg = f"Runtime exited without a result: the function's process {how}"
        tail = self._log_tail(job)
        return f"{msg}; its last output:\n{tail}" if tail else msg

    def _log_tail(self, job: _Running) -> str:
        try:
            with open(job.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
                return f.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def _conclude(
        self,
        job: _Running,
        state: State,
        error: str | None = None,
        *,
        result: Any = None,
        tb: str | None = None,
    ) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(job.exit_fd)
        with contextlib.suppress(OSError):
            os.close(job.exit_fd)
        if self.log_dir is not None:
            try:
                shutil.copyfile(job.log_path, self.log_dir / f"{job.inv.request_id}.log")
            except OSError:
                log.warning(
                    "could not keep the output of invocation %s in %s",
                    job.inv.request_id,
                    self.log_dir,
                    exc_info=True,
                )
        shutil.rmtree(job.workdir, ignore_errors=True)
        if job.inv.ended_at is None:
            job.inv.ended_at = time.time()
        job.inv.finish(state, result=result, error=error, tb=tb)

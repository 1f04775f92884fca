"""The Lithops platform: the same handlers on AWS Lambda, GCP, Azure, IBM, Knative... or localhost.

Lithops (PyPI ``lithops``, an optional extra: ``pip install 'fasdl[lithops]'``) is imported only
when this platform is opened, so fasdl runs without it. Each of our invocations is one Lithops
``call_async`` of ``run_in_lithops``, which runs the handler exactly as the local platform's child
process does (``_runner.run``: a Lambda-like context, the handler's errors and non-JSON results
turned into an outcome) and returns that outcome.

- **Configuration**: ``backend`` (``--backend``) and ``config_file`` (``--lithops-config``), or the
  environment variables ``FASDL_LITHOPS_BACKEND`` / ``FASDL_LITHOPS_CONFIG`` the CLI sets; without
  a file Lithops looks where its users keep it (``LITHOPS_CONFIG_FILE``, ``.lithops_config``,
  ``~/.lithops/config``). ``localhost`` needs no file: the config is built here, with this
  interpreter as the runtime (``sys.executable``: it has fasdl) and Lithops' localhost storage for
  Lithops' own internals. Without a backend and without a config file, localhost is used.
- **Memory and time**: ``memory_mb`` -> ``runtime_memory``, the time limit -> ``timeout`` (whole
  seconds, rounded up; the handler's context counts down the exact limit). The localhost backend
  enforces the timeout but not the memory.
- **Concurrency**: invocations beyond ``concurrency`` wait PENDING in our FIFO queue and are handed
  to Lithops only when a slot frees, so Lithops never queues them behind each other. The limit is
  the smaller of what the caller asked and the backend's: on localhost the adapter raises
  ``worker_processes`` to cover it (up to ``LOCALHOST_MAX_CONCURRENCY``, or the configured value if
  larger), plus one for a finished function's process that is still exiting; on a cloud it is the
  backend's ``max_workers``.
- **Records**: started/ended are Lithops' ``worker_start_tstamp``/``worker_end_tstamp`` (the
  function's handler in the sandbox), so billed duration is what the worker ran, rounded up to
  1 ms; a cloud also bills a cold start's init, which Lithops does not report. Peak memory is the
  function process's own peak RSS (it includes Lithops' worker runtime), 0 if it never reported.
- **Failures**: a handler's exception or unserialisable result comes back as on the local
  platform (``FAILED``, the handler's text and traceback); Lithops' own timeout kill ->
  ``TIMED_OUT``; a function process killed by SIGKILL (what Lithops calls out of memory) ->
  ``OUT_OF_MEMORY``; anything else Lithops reports -> ``FAILED`` with its text. If no status
  arrives within the time limit plus ``STATUS_GRACE_S``, the invocation is ``TIMED_OUT``.
- **Cancel**: our record is finished CANCELLED at once. On localhost the function's process group
  is killed (through the localhost backend's task table: best effort, an internal of Lithops 3.8);
  on a cloud the function cannot be stopped: it runs on, billed by the provider, until it returns
  or its timeout, and keeps its concurrency slot until Lithops reports it; its result is dropped.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasdl.errors import FasdlError, InvalidInput
from fasdl.platform.base import Handler, Invocation, Platform, State
from fasdl.platform.local import THREAD_ENV_VARS
from fasdl.validate import whole_number

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'fasdl[lithops]'"
BACKEND_ENV = "FASDL_LITHOPS_BACKEND"
CONFIG_ENV = "FASDL_LITHOPS_CONFIG"
LOCALHOST = "localhost"
LOCALHOST_MAX_CONCURRENCY = 64  # worker_processes is raised up to this (or the configured value)
POLL_S = {LOCALHOST: 0.05}  # how often each running invocation's status is read
CLOUD_POLL_S = 0.5
STATUS_GRACE_S = {LOCALHOST: 60.0}  # no status this long after the limit: TIMED_OUT
CLOUD_STATUS_GRACE_S = 300.0  # a cold start (a container image) can take minutes
SHUTDOWN_JOIN_S = 10.0
LITHOPS_TIMEOUT_MARGIN_S = 5.0  # Lithops ends a call this long before its runtime's timeout


def import_lithops() -> Any:
    """The lithops package, or ``InvalidInput`` with the install hint (fasdl runs without it)."""
    try:
        return importlib.import_module("lithops")
    except ImportError as e:
        raise InvalidInput(
            "platform",
            f"the lithops platform needs the lithops package, which cannot be imported ({e})",
            INSTALL_HINT,
        ) from e


def run_in_lithops(spec: dict[str, Any]) -> dict[str, Any]:
    """The function Lithops runs: the handler, as the local platform's child process runs it.

    The deadline starts when the function does (Lithops may queue or cold-start it first). The
    thread variables follow the memory's vCPUs as on the local platform (also passed as Lithops'
    ``extra_env``, so a torch imported by the handler obeys them), so numerics match it.
    """
    threads = str(max(1, math.ceil(spec["vcpus"])))
    for var in THREAD_ENV_VARS:
        os.environ[var] = threads
    from fasdl.platform._runner import run

    return run({**spec, "deadline_epoch": time.time() + spec["timeout_s"]})


def _localhost_section(config: dict[str, Any], concurrency: int) -> int:
    """Raise localhost's ``worker_processes`` for ``concurrency``; return our concurrency there."""
    section = config.setdefault(LOCALHOST, {}) or {}
    config[LOCALHOST] = section
    configured = section.get("worker_processes")
    cap = max(LOCALHOST_MAX_CONCURRENCY, int(configured or 0))
    ours = min(concurrency, cap)
    # One more process than we run: a finished function's process still exits after its status.
    section["worker_processes"] = max(int(configured or 0), ours + 1)
    section.setdefault("runtime", sys.executable)
    return ours


def build_config(
    backend: str | None, config_file: str | None, concurrency: int
) -> tuple[dict[str, Any] | None, str | None, int | None]:
    """(config dict or None, config file or None, our localhost concurrency or None).

    localhost without a file: a config built here. Otherwise the file (given, or found where
    Lithops looks), with ``backend`` overriding its own.
    """
    lithops_config = importlib.import_module("lithops.config")
    if config_file is not None and not Path(config_file).is_file():
        raise InvalidInput("lithops_config", f"{config_file} is not a file")
    found = config_file or lithops_config.get_default_config_filename()
    if found is None and backend in (None, LOCALHOST):
        config: dict[str, Any] = {
            "lithops": {"backend": LOCALHOST, "storage": LOCALHOST},
            LOCALHOST: {"runtime": sys.executable},
        }
        return config, None, _localhost_section(config, concurrency)
    if found is None:
        raise InvalidInput(
            "lithops_config",
            f"no Lithops configuration for the {backend} backend: none given, none in "
            "LITHOPS_CONFIG_FILE, ./.lithops_config or ~/.lithops/config",
            "write one (docs/clouds.md; `fasdl aws init` for AWS) or pass --lithops-config FILE",
        )
    loaded = lithops_config.load_yaml_config(found)
    config = dict(loaded or {})
    section = dict(config.get("lithops") or {})
    if backend is not None:
        section["backend"] = backend
        section.pop("mode", None)
    config["lithops"] = section
    ours = None
    # As Lithops reads it: the backend, else the mode's default (no mode: AWS Lambda).
    if section.get("backend") == LOCALHOST or (
        "backend" not in section and section.get("mode") == LOCALHOST
    ):
        section["backend"] = LOCALHOST
        section.setdefault("storage", LOCALHOST)
        ours = _localhost_section(config, concurrency)
    return config, str(found), ours


@dataclass(eq=False)
class _Live:
    """One invocation from ``_start`` until Lithops reports it (or we give up on it)."""

    inv: Invocation
    target: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    future: Any = None
    submitted: float | None = None  # monotonic
    cancelled: bool = False  # finished by cancel/shutdown: its outcome is dropped

    def finish_once(self, state: State, **kw: Any) -> bool:
        with self.lock:
            inv = self.inv
            if inv.done():
                return False
            if self.submitted is not None and inv.started_at is not None and not inv.duration_ms:
                inv.duration_ms = (time.monotonic() - self.submitted) * 1000
                inv.ended_at = inv.started_at + inv.duration_ms / 1000
            inv.finish(state, **kw)
            return True


class LithopsPlatform(Platform):
    """Run each invocation as a Lithops function on ``backend`` (at most ``concurrency`` at once)."""

    name = "lithops"

    def __init__(
        self,
        *,
        concurrency: int = 1000,
        backend: str | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency)
        lithops = import_lithops()
        backend = backend or os.environ.get(BACKEND_ENV) or None
        config_path = config_file or os.environ.get(CONFIG_ENV) or None
        config, found, local_limit = build_config(
            backend, str(config_path) if config_path else None, self.concurrency
        )
        try:
            self._fexec = lithops.FunctionExecutor(config=config, log_level=None)
        except InvalidInput:
            raise
        except Exception as e:  # missing credentials, an unknown backend, a bad file
            where = f" (config {found})" if found else ""
            raise FasdlError(
                f"could not open Lithops' {backend or 'default'} backend{where}: {e}"
            ) from e
        self.backend: str = self._fexec.backend
        self.config_file = found
        if local_limit is not None:
            self.concurrency = local_limit
        else:
            max_workers = (self._fexec.config.get(self.backend) or {}).get("max_workers")
            if max_workers:
                self.concurrency = min(
                    self.concurrency, whole_number(max_workers, "max_workers", minimum=1)
                )
        self._local = self.backend == LOCALHOST
        self._poll_s = POLL_S.get(self.backend, CLOUD_POLL_S)
        self._grace_s = STATUS_GRACE_S.get(self.backend, CLOUD_STATUS_GRACE_S)
        self._lock = threading.Lock()
        self._submit_lock = threading.Lock()  # FunctionExecutor's job ids are not thread-safe
        self._pending: collections.deque[_Live] = collections.deque()
        self._live: dict[str, _Live] = {}  # handed to Lithops, not yet reported
        self._running = 0
        self._closing = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the caller's side -------------------------------------------------------------------

    @property
    def max_timeout_s(self) -> float | None:
        """The longest time limit the backend keeps, or None (localhost: any).

        On a serverless backend Lithops cuts a call's timeout to its deployed runtime's
        ``runtime_timeout`` less 5 s (Lambda's default runtime: 180 s), so a longer one is refused
        here rather than killed early there.
        """
        if self._fexec.config["lithops"].get("mode") != "serverless":
            return None
        runtime_timeout = (self._fexec.config.get(self.backend) or {}).get("runtime_timeout")
        return float(runtime_timeout) - LITHOPS_TIMEOUT_MARGIN_S if runtime_timeout else None

    def invoke(
        self,
        handler: str | Handler,
        payload: dict[str, Any],
        *,
        memory_mb: int,
        timeout_s: float,
        sync: bool = False,
    ) -> Invocation:
        limit = self.max_timeout_s
        if limit is not None and isinstance(timeout_s, (int, float)) and timeout_s > limit:
            raise InvalidInput(
                "timeout_s",
                f"{timeout_s:g} s is longer than the {self.backend} runtime allows: Lithops stops "
                f"a call {LITHOPS_TIMEOUT_MARGIN_S:g} s before the runtime's runtime_timeout "
                f"({limit + LITHOPS_TIMEOUT_MARGIN_S:g} s)",
                f"set runtime_timeout in the {self.backend} section of the Lithops config (at most "
                "900 s on Lambda) and redeploy the runtime, or use a shorter time limit",
            )
        return super().invoke(handler, payload, memory_mb=memory_mb, timeout_s=timeout_s, sync=sync)

    def _start(self, inv: Invocation, target: str, body: bytes) -> None:
        with self._lock:
            if self._closing:
                inv.finish(State.FAILED, error="the platform is shut down")
                raise FasdlError(f"invocation of {inv.handler!r}: the platform is shut down")
            if inv.done():  # cancelled before it got here
                return
            live = _Live(inv, target)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="fasdl-lithops-watcher", daemon=True
                )
                self._thread.start()
            if self._running >= self.concurrency:
                self._pending.append(live)
                return
            self._running += 1
        self._submit(live)

    def _submit(self, live: _Live) -> None:
        inv = live.inv
        threads = str(max(1, math.ceil(inv.vcpus)))
        spec = {
            "target": live.target,
            "function_name": inv.handler,
            "request_id": inv.request_id,
            "memory_mb": inv.memory_mb,
            "vcpus": inv.vcpus,
            "timeout_s": inv.timeout_s,
            "event": inv.payload,
        }
        env = {var: threads for var in THREAD_ENV_VARS}
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(inv.memory_mb)
        try:
            with self._submit_lock:
                future = self._fexec.call_async(
                    run_in_lithops,
                    (spec,),
                    extra_env=env,
                    runtime_memory=inv.memory_mb,
                    timeout=max(1, math.ceil(inv.timeout_s)),
                    include_modules=None,  # the runtime has fasdl; ship no module source
                )
        except Exception as e:
            log.exception("Lithops could not start invocation %s", inv.request_id)
            live.finish_once(State.FAILED, error=f"Lithops could not start the function: {e!r}")
            self._release()
            return
        with live.lock:
            live.future = future
            live.submitted = time.monotonic()
            if not inv.done():
                inv.started_at = time.time()
                inv.state = State.RUNNING
        with self._lock:
            self._live[inv.request_id] = live
        if inv.done():  # cancelled while Lithops took it: stop it now that it has a job
            self._kill(live)
        self._wake.set()

    def _release(self) -> None:
        """A slot is free: hand the next pending invocation to Lithops."""
        with self._lock:
            if self._pending and not self._closing:
                nxt = self._pending.popleft()
            else:
                self._running -= 1
                return
        self._submit(nxt)

    def _cancel(self, inv: Invocation, reason: str) -> None:
        """Finish it as cancelled now; a pending one never starts; a running one is killed on
        localhost (best effort) and left to run out on a cloud (see the module's docstring)."""
        with self._lock:
            queued = next((live for live in self._pending if live.inv is inv), None)
            if queued is not None:
                self._pending.remove(queued)
            live = self._live.get(inv.request_id)
        if queued is not None or live is None:
            # Pending, or not yet handed to Lithops (``_submit`` kills it once it has a job).
            if not inv.done():
                inv.finish(State.CANCELLED, error=reason)
            return
        live.cancelled = True
        live.finish_once(State.CANCELLED, error=reason)
        self._kill(live)

    def _kill(self, live: _Live) -> None:
        """Stop the function where the backend allows: localhost kills its process group, and
        frees its slot (Lithops will never report it); a cloud lets it run out."""
        live.cancelled = True
        if not self._local or live.future is None:
            return
        env = getattr(self._fexec.compute_handler, "env", None)
        kill = getattr(env, "_kill_task_processes", None)
        if kill is None:
            log.warning("cannot stop a Lithops localhost function: this Lithops has no task table")
            return
        try:
            kill([live.future.job_key])
        except Exception:
            log.warning("stopping Lithops job %s failed", live.future.job_key, exc_info=True)
            return
        with self._lock:
            gone = self._live.pop(live.inv.request_id, None)
        if gone is not None:
            self._release()

    def shutdown(self) -> None:
        """Fail the pending invocations; stop (localhost) or abandon (cloud) the running ones."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            pending = list(self._pending)
            self._pending.clear()
            running = list(self._live.values())
        for live in pending:
            live.finish_once(
                State.FAILED, error="the platform shut down before the invocation started"
            )
        for live in running:
            live.finish_once(State.FAILED, error="the platform shut down while the invocation ran")
            self._kill(live)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(SHUTDOWN_JOIN_S)
        with contextlib.suppress(Exception):
            self._fexec.job_monitor.stop()
        if self._local:
            with contextlib.suppress(Exception):
                self._fexec.compute_handler.clear()
        with contextlib.suppress(Exception):
            self._fexec.clean(clean_cloudobjects=False)

    # ---- the watcher thread ------------------------------------------------------------------

    def _watch(self) -> None:
        storage = self._fexec.internal_storage
        while True:
            with self._lock:
                if self._closing:
                    return
                lives = list(self._live.values())
            for live in lives:
                try:
                    done = self._check(live, storage)
                except Exception as e:  # a watcher bug must not leave the invocation hanging
                    log.exception("watching invocation %s failed", live.inv.request_id)
                    live.finish_once(State.FAILED, error=f"the platform's watcher failed: {e!r}")
                    done = True
                if done:
                    with self._lock:
                        gone = self._live.pop(live.inv.request_id, None)
                    if gone is not None:
                        self._release()
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def _check(self, live: _Live, storage: Any) -> bool:
        """Whether Lithops has reported ``live`` (then it is finished)."""
        fut, inv = live.future, live.inv
        # Lithops' own job monitor may have read the status first (then the future says so).
        status = fut.status(throw_except=False, internal_storage=storage, check_only=True)
        if status is None and not (fut.ready or fut.error or fut.success or fut.done):
            assert live.submitted is not None
            waited = time.monotonic() - live.submitted
            if waited > inv.timeout_s + self._grace_s:
                live.finish_once(
                    State.TIMED_OUT,
                    error=f"Task timed out after {waited:.2f} seconds (timeout {inv.timeout_s:g} s): "
                    f"Lithops reported nothing within {self._grace_s:g} s of the limit",
                )
                self._kill(live)
                return True
            return False
        fut.status(throw_except=False, internal_storage=storage)
        outcome: dict[str, Any] | None = None
        if not fut.error:
            outcome = fut.result(throw_except=False, internal_storage=storage)
        if live.cancelled or inv.done():
            return True
        self._times(live, fut.stats)
        if fut.error:
            exc = fut._exception[1] if isinstance(fut._exception, tuple) else fut._exception
            text = exc.args[0] if getattr(exc, "args", None) else str(exc)
            if isinstance(exc, TimeoutError):
                live.finish_once(
                    State.TIMED_OUT,
                    error=f"Task timed out after {inv.duration_ms / 1000:.2f} seconds "
                    f"(timeout {inv.timeout_s:g} s; Lithops: {text})",
                )
            elif isinstance(exc, MemoryError):
                live.finish_once(State.OUT_OF_MEMORY, error=f"Runtime exited: {text}")
            else:
                live.finish_once(State.FAILED, error=f"{type(exc).__name__}: {text}")
            return True
        if not isinstance(outcome, dict):
            live.finish_once(State.FAILED, error=f"Lithops returned no outcome ({outcome!r})")
            return True
        inv.peak_memory_mb = float(outcome.get("peak_rss_mb") or 0.0)
        if outcome.get("ok") is True:
            live.finish_once(State.SUCCEEDED, result=outcome.get("result"))
        else:
            live.finish_once(State.FAILED, error=outcome.get("error"), tb=outcome.get("traceback"))
        return True

    @staticmethod
    def _times(live: _Live, stats: dict[str, Any]) -> None:
        """The function's start, end and duration as its Lithops worker measured them."""
        inv = live.inv
        start, end = stats.get("worker_start_tstamp"), stats.get("worker_end_tstamp")
        with live.lock:
            if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end >= start:
                inv.started_at = float(start)
                inv.ended_at = float(end)
                inv.duration_ms = (float(end) - float(start)) * 1000
            elif live.submitted is not None:
                inv.duration_ms = (time.monotonic() - live.submitted) * 1000
                if inv.started_at is not None:
                    inv.ended_at = inv.started_at + inv.duration_ms / 1000

"""A job's state in its store, so that a job outlives its coordinator.

``JobState`` (``output/<job>/job.json``) holds what ``fasdl resume`` needs: the configuration, the
last consistent checkpoint set and its iteration, the attempts and retries so far, and what the
earlier coordinators measured (worker results, invocation records, their own store requests and
wall time), so that the final summary counts every attempt.

``Lease`` (``output/<job>/lease.json``) says which coordinator drives the job; a ``LeaseKeeper``
thread renews its heartbeat. A second coordinator is refused while the heartbeat is fresh; a
stale lease (its coordinator died) can be taken over by ``fasdl resume``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fasdl.errors import CorruptObject, InvalidInput, ObjectNotFound
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.messages import WorkerResult, decode_json
from fasdl.store import ObjectStore

log = logging.getLogger(__name__)

LEASE_HEARTBEAT_S = 2.0
LEASE_STALE_S = 20.0  # ten missed heartbeats: its coordinator is gone
STATUSES = ("running", "failed", "interrupted", "finished")


@dataclass(frozen=True)
class Retry:
    """One failed attempt: the round it was running, the worker that failed and why, and the
    iterations past the checkpoint that were trained and thrown away."""

    round: int
    attempt: int
    worker: int | None  # None: the round failed as a whole (e.g. workers stopped unevenly)
    reason: str
    iterations_lost: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobState:
    config: JobConfig
    status: str = "running"
    round: int = 0  # rounds completed
    attempt: int = -1  # the last attempt started (-1: none yet)
    done: int = 0  # the iteration of the checkpoint set (0: from scratch)
    checkpoint_set: int | None = None
    retries: tuple[Retry, ...] = ()
    results: tuple[WorkerResult, ...] = ()  # of the completed rounds
    records: tuple[Mapping[str, Any], ...] = ()  # invocation records of earlier coordinators
    coordinator_requests: Mapping[str, int] = field(default_factory=dict)  # earlier coordinators
    wall_time_s: float = 0.0  # earlier coordinators
    error: str | None = None

    def with_(self, **changes: Any) -> JobState:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "status": self.status,
            "round": self.round,
            "attempt": self.attempt,
            "done": self.done,
            "checkpoint_set": self.checkpoint_set,
            "retries": [r.to_dict() for r in self.retries],
            "results": [r.to_dict() for r in self.results],
            "records": [dict(r) for r in self.records],
            "coordinator_requests": dict(self.coordinator_requests),
            "wall_time_s": self.wall_time_s,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Any, key: str) -> JobState:
        try:
            if not isinstance(d, dict):
                raise TypeError("not a JSON object")
            status = d["status"]
            if status not in STATUSES:
                raise ValueError(f"status {status!r}")
            return cls(
                config=JobConfig.from_dict(d["config"]),
                status=status,
                round=int(d["round"]),
                attempt=int(d["attempt"]),
                done=int(d["done"]),
                checkpoint_set=None if d["checkpoint_set"] is None else int(d["checkpoint_set"]),
                retries=tuple(Retry(**r) for r in d["retries"]),
                results=tuple(
                    WorkerResult.from_dict(r, f"{key}: results[{i}]")
                    for i, r in enumerate(d["results"])
                ),
                records=tuple(d["records"]),
                coordinator_requests={k: int(v) for k, v in d["coordinator_requests"].items()},
                wall_time_s=float(d["wall_time_s"]),
                error=d.get("error"),
            )
        except (KeyError, TypeError, ValueError, InvalidInput) as e:
            raise CorruptObject(key, f"not a fasdl job state ({type(e).__name__}: {e})") from e


def read_state(store: ObjectStore, keys: Keys) -> JobState:
    key = keys.job_state()
    return JobState.from_dict(decode_json(store.get(key), key), key)


def find_job(store: ObjectStore, job_id: str) -> JobState:
    """The state of job ``job_id`` in ``store`` (under the default output prefix); ``InvalidInput``
    on ``job_id`` when the store has no such job."""
    probe = Keys.for_job(JobConfig(job_id=job_id, store=store.url, platform="inline"))
    try:
        return read_state(store, probe)
    except ObjectNotFound:
        raise InvalidInput(
            "job_id",
            f"no job {job_id!r} in {store.url} (no {probe.job_state()})",
            "check the job id and --store (`fasdl runs --store URL` lists the jobs)",
        ) from None


def write_state(store: ObjectStore, keys: Keys, state: JobState) -> None:
    store.put(keys.job_state(), json.dumps(state.to_dict(), indent=1).encode())


@dataclass(frozen=True)
class Lease:
    holder: str
    host: str
    pid: int
    heartbeat: float  # time.time() of the last renewal

    def age_s(self) -> float:
        return time.time() - self.heartbeat

    @property
    def stale(self) -> bool:
        """No heartbeat for ``LEASE_STALE_S``, or its coordinator ran here and is gone."""
        if self.host == socket.gethostname() and not _alive(self.pid):
            return True
        return self.age_s() > LEASE_STALE_S

    def describe(self) -> str:
        return f"its coordinator (pid {self.pid} on {self.host}) renewed its lease {self.age_s():.0f} s ago"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_lease(store: ObjectStore, keys: Keys) -> Lease | None:
    try:
        d = decode_json(store.get(keys.lease()), keys.lease())
    except ObjectNotFound:
        return None
    try:
        return Lease(
            holder=str(d["holder"]),
            host=str(d["host"]),
            pid=int(d["pid"]),
            heartbeat=float(d["heartbeat"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptObject(keys.lease(), f"not a lease ({e})") from e


def refuse_if_running(store: ObjectStore, keys: Keys) -> Lease | None:
    """Raise ``InvalidInput`` if another coordinator drives the job now; else its stale lease."""
    current = read_lease(store, keys)
    if current is not None and not current.stale:
        raise InvalidInput(
            "job_id",
            f"job {keys.job_id!r} is running: {current.describe()}",
            "wait for it, or choose another --job-id",
        )
    return current


class LeaseKeeper:
    """Holds a job's lease: writes it, renews the heartbeat from a thread, and drops it on exit.

    ``takeover``: take a stale lease (``fasdl resume``); a fresh one is always refused."""

    def __init__(self, store: ObjectStore, keys: Keys, *, takeover: bool) -> None:
        self.store = store
        self.keys = keys
        self.lease = Lease(
            holder=secrets.token_hex(8), host=socket.gethostname(), pid=os.getpid(), heartbeat=0.0
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        current = refuse_if_running(store, keys)
        if current is not None and not takeover:
            raise InvalidInput("job_id", f"job {keys.job_id!r} has a lease already")

    def _renew(self) -> None:
        self.lease = replace(self.lease, heartbeat=time.time())
        self.store.put(self.keys.lease(), json.dumps(asdict(self.lease)).encode())

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_HEARTBEAT_S):
            try:
                self._renew()
            except Exception:  # a store outage: the next beat tries again
                log.warning("could not renew the lease of job %s", self.keys.job_id, exc_info=True)

    def __enter__(self) -> LeaseKeeper:
        self._renew()
        self._thread = threading.Thread(target=self._beat, name="fasdl-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.store.delete([self.keys.lease()])
        except Exception:
            log.warning("could not drop the lease of job %s", self.keys.job_id, exc_info=True)

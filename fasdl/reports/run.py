"""A job as its store holds it, read into typed values (the only module here that does I/O).

``read_run`` gathers what a job leaves under ``output/<job>/``: its state (``job.json``), its
summary once it finished, worker 0's progress, every worker's iteration logs, the invocation
records, the lease of a live coordinator and, when the job came from a plan, the prediction.
Everything but the state may be missing (a job that is starting, running or failed); what is
there and does not decode raises ``CorruptObject`` naming its key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fasdl.errors import CorruptObject
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import JobSummary
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.logs import Progress, WorkerLogs, read_worker_logs
from fasdl.kreduce.messages import decode_json
from fasdl.kreduce.state import JobState, Lease, find_job, read_lease
from fasdl.optimizer.accuracy import PredictionCheck
from fasdl.platform.base import InvocationRecord
from fasdl.store import ObjectStore

OUTPUT_PREFIX = "output"  # JobConfig's default output prefix: where `fasdl runs` looks


@dataclass(frozen=True)
class RunData:
    """Everything a job's store holds about it; what is not there yet is None or empty."""

    store_url: str
    keys: Keys
    state: JobState
    summary: JobSummary | None
    progress: Progress | None
    logs: WorkerLogs
    records: tuple[InvocationRecord, ...]
    lease: Lease | None
    prediction: PredictionCheck | None
    arrived: frozenset[int] = frozenset()  # workers at the current attempt's start barrier
    logged_this_round: frozenset[int] = frozenset()  # workers that wrote the current round's log

    @property
    def config(self) -> JobConfig:
        return self.state.config

    @property
    def job_id(self) -> str:
        return self.state.config.job_id


def read_run(store: ObjectStore, job_id: str, *, logs: bool = True) -> RunData:
    """The job ``job_id`` of ``store``. ``InvalidInput`` (on ``job_id``) when it has no state.

    ``logs=False`` skips the per-iteration logs (what ``fasdl status`` and ``runs`` need not)."""
    state = find_job(store, job_id)
    keys = Keys.for_job(state.config, attempt=max(0, state.attempt))
    present = set(store.list(keys.output))
    summary = None
    if keys.summary() in present:
        summary = JobSummary.from_dict(_json(store, keys.summary()), keys.summary())
    progress = None
    if keys.progress() in present:
        progress = Progress.from_dict(_json(store, keys.progress()), keys.progress())
    records: list[Mapping[str, Any]] = list(state.records)
    if keys.invocations() in present and state.status != "running":
        records = _json_list(store, keys.invocations())
    pkey = keys.prediction()
    prediction = _prediction(_json(store, pkey), pkey) if pkey in present else None
    round_logs = {
        parsed[0]
        for k in present
        if (parsed := keys.parse_worker_log(k)) is not None and parsed[1] == state.round
    }
    arrived: set[int] = set()
    if state.status == "running" and state.attempt >= 0:  # one LIST of the start barrier
        barrier = set(store.list(keys.arrived(0).rsplit("/", 1)[0] + "/"))
        arrived = {w for w in range(state.config.num_workers) if keys.arrived(w) in barrier}
    return RunData(
        store_url=store.url,
        keys=keys,
        state=state,
        summary=summary,
        progress=progress,
        logs=read_worker_logs(store, keys) if logs else {},
        records=tuple(_record(r, keys.invocations(), i) for i, r in enumerate(records)),
        lease=read_lease(store, keys) if keys.lease() in present else None,
        prediction=prediction,
        arrived=frozenset(arrived),
        logged_this_round=frozenset(round_logs),
    )


def list_job_ids(store: ObjectStore, output_prefix: str = OUTPUT_PREFIX) -> list[str]:
    """The ids of the jobs with a state under ``output_prefix`` (one listing of the prefix)."""
    prefix = output_prefix.strip("/") + "/"
    ids = []
    for key in store.list(prefix):
        job, _, rest = key[len(prefix) :].partition("/")
        if rest == "job.json":
            ids.append(job)
    return sorted(ids)


def _json(store: ObjectStore, key: str) -> Any:
    return decode_json(store.get(key), key)


def _json_list(store: ObjectStore, key: str) -> list[Mapping[str, Any]]:
    try:
        value = json.loads(store.get(key))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptObject(key, f"not JSON: {e}") from e
    if not isinstance(value, list):
        raise CorruptObject(key, "not a list of invocation records")
    return value


def _record(d: Any, key: str, index: int) -> InvocationRecord:
    names = {f.name for f in dataclasses.fields(InvocationRecord)}
    if not isinstance(d, Mapping):
        raise CorruptObject(key, f"record {index} is not a JSON object")
    try:
        return InvocationRecord(**{k: v for k, v in d.items() if k in names})
    except TypeError as e:
        raise CorruptObject(key, f"record {index} is not an invocation record ({e})") from e


__all__ = [
    "OUTPUT_PREFIX",
    "RunData",
    "list_job_ids",
    "read_run",
]


def _prediction(d: Any, key: str) -> PredictionCheck:
    """``output/<job>/prediction.json``: ``PredictionCheck.to_dict`` of ``fasdl train --plan``."""
    try:
        return PredictionCheck.from_dict(d)
    except ValueError as e:
        raise CorruptObject(key, f"not a prediction: {e}") from None

"""The workers' per-iteration logs: what each iteration took, read back from the store.

Every invocation of worker ``w`` writes one JSON line per iteration it ran to
``Keys.worker_log(w, round)``; a worker that ran several rounds has several files. Here they
are read back (``read_worker_logs``) and summarised: the mean seconds of each phase of an
iteration, the median and 90th percentile of the whole (``iteration_stats``), the training loop
(``loop_s``) and how long the slowest worker's training held the others up (``straggler_s``).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fasdl.errors import CorruptObject
from fasdl.kreduce.keys import Keys
from fasdl.store.base import ObjectStore


@dataclass(frozen=True)
class IterationLog:
    """One iteration of one worker, in seconds; ``iteration_s`` is all of it. ``end_s`` is the
    wall-clock time (unix seconds) the iteration ended, for loss against wall time; logs written
    before it existed have none."""

    iteration: int
    epoch: int
    loss: float
    train_s: float
    upload_s: float
    aggregate_s: float
    download_s: float
    iteration_s: float
    end_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> IterationLog:
        names = [f.name for f in dataclasses.fields(cls)]
        optional = {"end_s"}
        if not isinstance(d, dict) or not set(names) - optional <= set(d) <= set(names):
            raise ValueError(f"an iteration log has the fields {names}, not {d!r}")
        bad = [
            k
            for k, v in d.items()
            if isinstance(v, bool)
            or not (isinstance(v, int | float) or (v is None and k in optional))
        ]
        if bad:
            raise ValueError(f"an iteration log's {', '.join(sorted(bad))} must be numbers")
        return cls(**d)


@dataclass(frozen=True)
class Progress:
    """What worker 0 reports while it trains (``Keys.progress()``): the last iteration, its epoch
    and loss, and when (``time``, unix seconds). The round, its attempt, the iteration the
    invocation started from, when its training loop started and the job's total iterations let
    ``fasdl status`` tell the pace and the time left; progress written before they existed has
    none of them."""

    iteration: int
    epoch: int
    loss: float
    time: float
    round: int | None = None
    attempt: int | None = None
    start_iteration: int | None = None
    loop_started: float | None = None
    total_iterations: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, key: str) -> Progress:
        """Raises ``CorruptObject`` naming ``key``."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {"iteration", "epoch", "loss", "time"}
        if not isinstance(d, dict) or not required <= set(d) <= names:
            raise CorruptObject(key, f"not a progress report (fields {sorted(names)}): {d!r}")
        bad = [
            k
            for k, v in d.items()
            if isinstance(v, bool)
            or not (isinstance(v, int | float) or (v is None and k not in required))
        ]
        if bad:
            raise CorruptObject(key, f"{', '.join(sorted(bad))} must be numbers")
        whole = {"iteration", "epoch", "round", "attempt", "start_iteration", "total_iterations"}
        return cls(**{k: int(v) if k in whole and v is not None else v for k, v in d.items()})


WorkerLogs = dict[int, list[IterationLog]]  # worker -> its iterations, in order


def read_worker_logs(store: ObjectStore, keys: Keys) -> WorkerLogs:
    """Every worker's iterations of the job whose keys are ``keys``, each sorted by iteration.

    Workers that wrote no log are absent. A line that is not an iteration log raises
    CorruptObject, naming its key and line."""
    by_worker: WorkerLogs = {}
    for key in sorted(store.list(keys.logs())):
        parsed = keys.parse_worker_log(key)
        if parsed is None:
            continue
        rows = by_worker.setdefault(parsed[0], [])
        for n, line in enumerate(store.get(key).decode().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(IterationLog.from_dict(json.loads(line)))
            except (ValueError, TypeError) as e:
                raise CorruptObject(key, f"line {n} is not an iteration log ({e})") from e
    for rows in by_worker.values():
        rows.sort(key=lambda r: r.iteration)
    return by_worker


@dataclass(frozen=True)
class IterationStats:
    """Seconds per iteration of one worker: the mean of each phase, of what the phases leave
    out (``other``: the transform, the bookkeeping) and of the whole, plus medians and the 90th
    percentile of the whole (the nearest rank at or below it)."""

    train: float
    upload: float
    aggregate: float
    download: float
    other: float
    iteration: float
    median_iteration: float
    median_train: float
    p90_iteration: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def iteration_stats(rows: Sequence[IterationLog]) -> IterationStats:
    """The statistics of one worker's iterations (at least one)."""
    if not rows:
        raise ValueError("no iterations to summarise")
    n = len(rows)

    def mean(values: Iterable[float]) -> float:
        return sum(values) / n

    train = mean(r.train_s for r in rows)
    upload = mean(r.upload_s for r in rows)
    aggregate = mean(r.aggregate_s for r in rows)
    download = mean(r.download_s for r in rows)
    whole = mean(r.iteration_s for r in rows)
    return IterationStats(
        train=train,
        upload=upload,
        aggregate=aggregate,
        download=download,
        other=whole - (train + upload + aggregate + download),
        iteration=whole,
        median_iteration=statistics.median(r.iteration_s for r in rows),
        median_train=statistics.median(r.train_s for r in rows),
        p90_iteration=sorted(r.iteration_s for r in rows)[int(0.9 * (n - 1))],
    )


def mean_stats(stats: Sequence[IterationStats]) -> IterationStats | None:
    """The field-by-field mean of several workers' statistics; None for none."""
    if not stats:
        return None
    fields = [f.name for f in dataclasses.fields(IterationStats)]
    return IterationStats(**{k: sum(getattr(s, k) for s in stats) / len(stats) for k in fields})


def loop_s(rows: Sequence[IterationLog]) -> float:
    """Seconds one worker spent in its training loop: the sum of its iterations."""
    return sum(r.iteration_s for r in rows)


def straggler_s(logs: Mapping[int, Sequence[IterationLog]], worker: int = 0) -> float:
    """Mean seconds per iteration that ``worker`` waits for the slowest worker's training.

    Over the iterations every worker logged: the slowest ``train_s`` of any worker minus
    ``worker``'s own. The model (equal, deterministic iterations) leaves this out."""
    trains = [{r.iteration: r.train_s for r in rows} for rows in logs.values()]
    common = set(trains[0]).intersection(*trains[1:]) if trains else set()
    if not common:
        raise ValueError("no iteration logged by every worker")
    own = {r.iteration: r.train_s for r in logs[worker]}
    return sum(max(t[i] for t in trains) - own[i] for i in sorted(common)) / len(common)

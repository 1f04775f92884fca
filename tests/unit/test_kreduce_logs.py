"""Reading the workers' per-iteration logs back and summarising them."""

from __future__ import annotations

import dataclasses
import json
import uuid

import numpy as np
import pytest

from fasdl.errors import CorruptObject
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.logs import (
    IterationLog,
    IterationStats,
    iteration_stats,
    loop_s,
    mean_stats,
    read_worker_logs,
    straggler_s,
)
from fasdl.store import ObjectStore, open_store
from fasdl.store.memory import MemoryStore


@pytest.fixture
def store():
    name = f"logs-{uuid.uuid4().hex[:8]}"
    yield open_store(f"memory://{name}")
    MemoryStore.discard(name)


def _keys(job_id: str = "job-a", output_prefix: str = "results/runs") -> Keys:
    # A non-default output prefix: the reader must follow the job's layout, not assume one.
    return Keys.for_job(JobConfig(job_id=job_id, output_prefix=output_prefix))


def _log(iteration: int, rng: np.random.Generator, *, train_s: float | None = None) -> IterationLog:
    phases = rng.uniform(0.001, 0.05, size=4)
    train = float(phases[0]) if train_s is None else train_s
    return IterationLog(
        iteration=iteration,
        epoch=1 + iteration // 10,
        loss=float(rng.uniform(0.1, 2.0)),
        train_s=train,
        upload_s=float(phases[1]),
        aggregate_s=float(phases[2]),
        download_s=float(phases[3]),
        iteration_s=train + float(phases[1:].sum()) + float(rng.uniform(0, 0.01)),
    )


def _write(
    store: ObjectStore, keys: Keys, worker: int, round_: int, rows: list[IterationLog]
) -> None:
    """As the worker writes them: one JSON object per line."""
    text = "\n".join(json.dumps(dataclasses.asdict(r)) for r in rows)
    store.put(keys.worker_log(worker, round_), text.encode())


def test_worker_log_keys_parse_back_and_other_keys_do_not() -> None:
    keys = _keys()
    for w, r in [(0, 0), (3, 1), (12, 140)]:
        assert keys.parse_worker_log(keys.worker_log(w, r)) == (w, r)
    assert keys.parse_worker_log(keys.progress()) is None
    assert keys.parse_worker_log(keys.logs() + "notes.txt") is None
    assert keys.parse_worker_log(_keys("job-b").worker_log(0, 0)) is None
    assert keys.worker_log(2, 0).startswith(keys.logs())


def test_reads_every_round_of_every_worker_in_iteration_order(store) -> None:
    rng = np.random.default_rng(0)
    keys = _keys()
    rows = {w: [_log(t, rng) for t in range(1, 8)] for w in range(3)}
    for w, its in rows.items():  # two rounds each: iterations 1-4 and 5-7, written in reverse
        _write(store, keys, w, 1, its[4:])
        _write(store, keys, w, 0, its[:4])
    # Another job in the same store, and a stray object under the logs prefix: both ignored.
    _write(store, _keys("job-b"), 0, 0, [_log(1, rng)])
    store.put(keys.logs() + "README", b"not a log")

    got = read_worker_logs(store, keys)

    assert got == rows


def test_an_empty_log_and_blank_lines_give_no_iterations(store) -> None:
    keys = _keys()
    rng = np.random.default_rng(1)
    store.put(keys.worker_log(1, 0), b"")
    one = _log(1, rng)
    store.put(keys.worker_log(0, 0), (json.dumps(dataclasses.asdict(one)) + "\n\n").encode())
    assert read_worker_logs(store, keys) == {0: [one], 1: []}


@pytest.mark.parametrize(
    "line",
    [
        "{not json",
        json.dumps({"iteration": 1}),
        json.dumps({**dataclasses.asdict(_log(1, np.random.default_rng(2))), "extra": 1}),
        json.dumps({**dataclasses.asdict(_log(1, np.random.default_rng(2))), "train_s": "fast"}),
        json.dumps([1, 2, 3]),
    ],
)
def test_a_corrupt_line_names_its_key(store, line: str) -> None:
    keys = _keys()
    store.put(keys.worker_log(2, 0), line.encode())
    with pytest.raises(CorruptObject, match=r"w2\.r000\.jsonl' is corrupt: line 1 "):
        read_worker_logs(store, keys)


def test_iteration_stats_are_the_means_medians_and_lower_p90() -> None:
    rng = np.random.default_rng(3)
    rows = [_log(t, rng) for t in range(1, 12)]
    col = {
        f.name: np.array([getattr(r, f.name) for r in rows])
        for f in dataclasses.fields(IterationLog)
    }
    phases = col["train_s"] + col["upload_s"] + col["aggregate_s"] + col["download_s"]

    s = iteration_stats(rows)

    assert s.train == pytest.approx(col["train_s"].mean())
    assert s.upload == pytest.approx(col["upload_s"].mean())
    assert s.aggregate == pytest.approx(col["aggregate_s"].mean())
    assert s.download == pytest.approx(col["download_s"].mean())
    assert s.iteration == pytest.approx(col["iteration_s"].mean())
    assert s.other == pytest.approx((col["iteration_s"] - phases).mean())
    assert s.median_iteration == pytest.approx(np.median(col["iteration_s"]))
    assert s.median_train == pytest.approx(np.median(col["train_s"]))
    assert s.p90_iteration == pytest.approx(np.percentile(col["iteration_s"], 90, method="lower"))
    assert list(s.to_dict()) == [f.name for f in dataclasses.fields(IterationStats)]


def test_iteration_stats_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no iterations"):
        iteration_stats([])


def test_mean_stats_is_field_by_field() -> None:
    rng = np.random.default_rng(4)
    stats = [iteration_stats([_log(t, rng) for t in range(1, 6)]) for _ in range(3)]
    m = mean_stats(stats)
    assert m is not None
    for f in dataclasses.fields(IterationStats):
        assert getattr(m, f.name) == pytest.approx(np.mean([getattr(s, f.name) for s in stats]))
    assert mean_stats([]) is None


def test_loop_is_the_sum_of_the_iterations() -> None:
    rng = np.random.default_rng(5)
    rows = [_log(t, rng) for t in range(1, 9)]
    assert loop_s(rows) == pytest.approx(np.sum([r.iteration_s for r in rows]))
    assert loop_s([]) == 0


def test_straggler_is_the_mean_wait_for_the_slowest_training() -> None:
    rng = np.random.default_rng(6)
    train = rng.uniform(0.01, 0.1, size=(3, 6))  # worker x iteration
    logs = {w: [_log(t + 1, rng, train_s=float(train[w, t])) for t in range(6)] for w in range(3)}
    expected = (train.max(axis=0) - train[0]).mean()
    assert straggler_s(logs) == pytest.approx(expected)
    assert straggler_s(logs, worker=2) == pytest.approx((train.max(axis=0) - train[2]).mean())


def test_straggler_aligns_workers_by_iteration_over_those_all_logged() -> None:
    rng = np.random.default_rng(7)
    train = rng.uniform(0.01, 0.1, size=(2, 5))
    logs = {w: [_log(t + 1, rng, train_s=float(train[w, t])) for t in range(5)] for w in range(2)}
    del logs[1][0]  # worker 1 lost its log of iteration 1: compare iterations 2-5 only
    expected = (train[:, 1:].max(axis=0) - train[0, 1:]).mean()
    assert straggler_s(logs) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no iteration"):
        straggler_s({0: logs[0][:1], 1: logs[1][:0]})

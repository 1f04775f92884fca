"""What a report, ``fasdl status`` and ``fasdl runs`` show, computed from a ``RunData``: pure
functions of the run (and of the time now, passed in), no I/O, so they test in milliseconds.

Invocation records do not say which worker or round they ran: the coordinator invokes the W
workers of each attempt in worker order (``coordinator._run_round``), so record ``i`` of a job is
worker ``i % W`` of attempt ``i // W``. An attempt that failed is in ``JobState.retries``; the
others are the rounds, in order.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fasdl.kreduce.logs import IterationStats, iteration_stats
from fasdl.pricing import Prices
from fasdl.reports.run import RunData


@dataclass(frozen=True)
class Span:
    """One invocation on the timeline, in seconds since the job's first invocation started."""

    worker: int
    attempt: int
    round: int
    state: str  # the platform's: succeeded, failed, timed_out, out_of_memory, cancelled, ...
    start_s: float
    end_s: float
    failed_attempt: bool  # its attempt failed and was retried (or ended the job)
    error: str | None


def job_start(run: RunData) -> float | None:
    """Unix time the job's first invocation started (None before any record or log says)."""
    starts = [r.started_at for r in run.records if r.started_at is not None]
    if starts:
        return min(starts)
    ends = [r.end_s - r.iteration_s for rows in run.logs.values() for r in rows if r.end_s]
    return min(ends) if ends else None


def timeline(run: RunData) -> list[Span]:
    """The job's invocations, one ``Span`` each, by record order (see the module's docstring)."""
    t0 = job_start(run)
    if t0 is None:
        return []
    W = run.config.num_workers
    failed = {r.attempt for r in run.state.retries}
    rounds: dict[int, int] = {}
    done = 0
    for a in range(len(run.records) // W + 1):
        rounds[a] = done
        if a not in failed:
            done += 1
    spans = []
    for i, r in enumerate(run.records):
        if r.started_at is None:
            continue
        attempt = i // W
        end = r.ended_at if r.ended_at is not None else r.started_at + r.duration_ms / 1000
        spans.append(
            Span(
                worker=i % W,
                attempt=attempt,
                round=rounds[attempt],
                state=r.state,
                start_s=r.started_at - t0,
                end_s=end - t0,
                failed_attempt=attempt in failed,
                error=r.error,
            )
        )
    return spans


@dataclass(frozen=True)
class LossCurve:
    """Worker 0's training loss: by iteration, and by seconds since the job started (``None``
    for logs written before iterations carried their end time)."""

    iterations: tuple[int, ...]
    losses: tuple[float, ...]
    wall_s: tuple[float, ...] | None


def loss_curve(run: RunData, worker: int = 0) -> LossCurve:
    rows = run.logs.get(worker, [])
    t0 = job_start(run)
    wall = None
    if rows and t0 is not None and all(r.end_s is not None for r in rows):
        wall = tuple(float(r.end_s) - t0 for r in rows if r.end_s is not None)
    return LossCurve(
        iterations=tuple(r.iteration for r in rows),
        losses=tuple(r.loss for r in rows),
        wall_s=wall,
    )


def phase_breakdown(run: RunData) -> dict[str, IterationStats]:
    """Mean seconds per iteration by phase for aggregator 0 and the first non-aggregator (the
    one that never waits for aggregation in K-Reduce), by role name."""
    cfg = run.config
    out: dict[str, IterationStats] = {}
    roles = [(0, "aggregator (worker 0)")]
    if cfg.num_aggregators < cfg.num_workers:
        k = cfg.num_aggregators
        roles.append((k, f"non-aggregator (worker {k})"))
    for w, name in roles:
        rows = run.logs.get(w)
        if rows:
            out[name] = iteration_stats(rows)
    return out


@dataclass(frozen=True)
class CostSplit:
    """Dollars of a finished job: functions, and the store's requests by kind."""

    functions: float
    storage_by_kind: dict[str, float]
    requests: dict[str, int]
    requests_per_iteration: dict[str, float]

    @property
    def total(self) -> float:
        return self.functions + sum(self.storage_by_kind.values())


def cost_split(run: RunData, prices: Prices) -> CostSplit | None:
    s = run.summary
    if s is None:
        return None
    requests = {k: int(v) for k, v in s.requests.items()}
    return CostSplit(
        functions=float(s.cost_usd["functions"]),
        storage_by_kind={k: n * prices.request_usd(k) for k, n in requests.items()},
        requests=requests,
        requests_per_iteration={k: n / max(1, s.iterations) for k, n in requests.items()},
    )


def function_cost_so_far(run: RunData, prices: Prices, now: float) -> float:
    """Dollars of functions billed so far. Exact once the coordinator wrote the records (the job
    stopped); while it runs, the completed rounds' invocations (their setup, loop and checkpoint
    seconds) plus W functions since the current round's training loop started: an estimate."""
    if run.records:
        return prices.function_cost(sum(r.gb_s for r in run.records), len(run.records))
    cfg = run.config
    gb = cfg.memory_mb / 1024
    past_s = sum(r.setup_s + r.train_s + r.comm_s + r.checkpoint_s for r in run.state.results)
    current_s = 0.0
    p = run.progress
    if (
        run.state.status == "running"
        and p is not None
        and p.loop_started is not None
        and p.round in (None, run.state.round)
    ):
        current_s = cfg.num_workers * max(0.0, now - p.loop_started)
    invocations = cfg.num_workers * (run.state.attempt + 1)
    return prices.function_cost(gb * (past_s + current_s), invocations)


@dataclass(frozen=True)
class WorkerStatus:
    worker: int
    role: str  # aggregator, non-aggregator
    state: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobStatus:
    """``fasdl status``: where a job is, how fast it goes, what it has cost, what is left."""

    job_id: str
    state: str  # running, finished, failed, interrupted, or stopped (running, coordinator gone)
    round: int
    attempt: int
    iteration: int
    total_iterations: int | None
    epoch: int | None
    epochs: int
    loss: float | None
    seconds_per_iteration: float | None
    cost_usd: float
    cost_is_estimate: bool
    time_left_s: float | None
    wall_time_s: float | None
    retries: int
    test_accuracy: float | None
    error: str | None
    workers: tuple[WorkerStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["workers"] = [w.to_dict() for w in self.workers]
        return d


def job_status(run: RunData, prices: Prices, now: float) -> JobStatus:
    st, cfg, p, s = run.state, run.config, run.progress, run.summary
    state = st.status
    if state == "running" and (run.lease is None or run.lease.stale):
        state = "stopped"  # its coordinator died: `fasdl resume` continues it
    total = s.iterations if s is not None else (p.total_iterations if p else None)
    iteration = s.iterations if s is not None else max(st.done, p.iteration if p else 0)
    spi = seconds_per_iteration(run)
    left = None
    if state == "finished":
        left = 0.0
    elif total is not None and spi is not None and state == "running":
        left = (total - iteration) * spi
    if s is not None:
        cost, estimate = float(s.cost_usd["total"]), False
    else:
        cost = function_cost_so_far(run, prices, now)
        estimate = not run.records
    return JobStatus(
        job_id=run.job_id,
        state=state,
        round=st.round,
        attempt=max(0, st.attempt),
        iteration=iteration,
        total_iterations=total,
        epoch=(p.epoch if p is not None else None),
        epochs=cfg.epochs,
        loss=s.final_loss if s is not None else (p.loss if p else None),
        seconds_per_iteration=spi,
        cost_usd=cost,
        cost_is_estimate=estimate,
        time_left_s=left,
        wall_time_s=s.wall_time_s if s is not None else (st.wall_time_s or None),
        retries=len(st.retries),
        test_accuracy=s.test_accuracy if s is not None else None,
        error=st.error,
        workers=tuple(_worker_states(run, state)),
    )


def seconds_per_iteration(run: RunData) -> float | None:
    """The current pace: worker 0's reports of this invocation while it runs; afterwards the
    median iteration of worker 0's logs, or the wall time per iteration of the summary."""
    p = run.progress
    if (
        run.state.status == "running"
        and p is not None
        and p.loop_started is not None
        and p.start_iteration is not None
        and p.iteration > p.start_iteration
    ):
        return (p.time - p.loop_started) / (p.iteration - p.start_iteration)
    rows = run.logs.get(0)
    if rows:
        return float(statistics.median(r.iteration_s for r in rows))
    if run.summary is not None and run.summary.iterations:
        return run.summary.wall_time_s / run.summary.iterations
    return None


def _worker_states(run: RunData, state: str) -> list[WorkerStatus]:
    cfg = run.config
    failed_worker = run.state.retries[-1].worker if run.state.retries else None
    out = []
    for w in range(cfg.num_workers):
        role = "aggregator" if w < cfg.num_aggregators else "non-aggregator"
        if state == "finished":
            ws = "finished"
        elif state == "running":
            if w in run.logged_this_round:
                ws = f"done with round {run.state.round}"
            elif w in run.arrived:
                ws = f"training (round {run.state.round})"
            else:
                ws = f"starting (round {run.state.round})"
        elif state == "failed" and w == failed_worker:
            ws = "failed: " + run.state.retries[-1].reason
        else:
            ws = "stopped"
        out.append(WorkerStatus(w, role, ws))
    return out


@dataclass(frozen=True)
class RunRow:
    """``fasdl runs``: one job in one line."""

    job_id: str
    model: str
    dataset: str
    pattern: str
    num_workers: int
    num_aggregators: int
    memory_mb: int
    state: str
    iteration: int
    total_iterations: int | None
    test_accuracy: float | None
    wall_time_s: float | None
    cost_usd: float
    started_at: float | None  # unix time of its first invocation (None: not known yet)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_row(run: RunData, prices: Prices, now: float) -> RunRow:
    st = job_status(run, prices, now)
    cfg = run.config
    started = job_start(run)
    if started is None and run.progress is not None:
        started = run.progress.loop_started or run.progress.time
    if started is None and run.lease is not None:
        started = run.lease.heartbeat
    return RunRow(
        job_id=run.job_id,
        model=cfg.model,
        dataset=cfg.dataset,
        pattern=cfg.pattern,
        num_workers=cfg.num_workers,
        num_aggregators=cfg.num_aggregators,
        memory_mb=cfg.memory_mb,
        state=st.state,
        iteration=st.iteration,
        total_iterations=st.total_iterations,
        test_accuracy=st.test_accuracy,
        wall_time_s=st.wall_time_s,
        cost_usd=st.cost_usd,
        started_at=started,
    )


def newest_first(rows: Sequence[RunRow]) -> list[RunRow]:
    """Jobs by the start of their first invocation, newest first; unknown starts (a job whose
    first round has not begun) first of all, then by id."""
    return sorted(
        rows,
        key=lambda r: (r.started_at is not None, -(r.started_at or 0.0), r.job_id),
    )


def config_rows(run: RunData) -> list[tuple[str, str]]:
    """The job's configuration, field by field, as the report's table shows it."""
    return [(k, _show(v)) for k, v in run.config.to_dict().items()]


def output_rows(run: RunData) -> list[tuple[str, str]]:
    if run.summary is not None:
        return [(k, v) for k, v in run.summary.outputs.items()]
    k = run.keys
    return [
        ("store", run.store_url),
        ("state", k.job_state()),
        ("logs", k.logs()),
        ("model", k.model() + " (when it finishes)"),
    ]


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_show(x)}" for k, x in v.items())
    return "" if v is None else str(v)

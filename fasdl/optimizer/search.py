"""Searches over (W workers, K aggregators, M MB): the paper's heuristic, ours, and exhaustive.

Ours and the exhaustive search first build the Pareto frontier of (time, cost) — which does not
depend on the deadline — and then take the cheapest point within the deadline (or the fastest
within the budget). A looser deadline only adds points to choose from, so it can never give a
dearer plan. The paper's heuristic is deadline-driven and has no such guarantee.

Ours prunes the exhaustive scan, for every (K, M) column at once:

1. W*, the fewest workers at which the global batch cap binds, by bisection (the
   non-aggregators' batch grows with W, the cap's share of it falls).
2. The configurations at W* give a first frontier.
3. A column whose lower bounds at W = K are already dominated is dropped: the bounds (the fewest
   iterations any plan can run, times an iteration that grows by one get per worker, and what
   those iterations must pay) only grow with W.
4. Above W*: every W up to the last one whose lower bounds the frontier does not dominate
   (bisection again). This step is exact: nothing it skips can be on the frontier.
5. Below W*: all W when there are at most FULL_BELOW of them, else the top FULL_BELOW and a
   ladder K, K+1, K+2, K+4, …. Below the cap every extra worker adds more to the global batch than
   to the iteration, so time (and, in practice, cost) falls towards W*; this step is the heuristic
   part, checked against the exhaustive search by the tests.

See docs/optimizer.md.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fasdl.errors import InvalidInput
from fasdl.optimizer.grid import TransferGrid
from fasdl.optimizer.model import (
    MB_PER_GB,
    Evaluation,
    Scenario,
    evaluate,
    nonagg_batch_by_time,
)
from fasdl.optimizer.model import iteration_s as _iteration_only

DEFAULT_MAX_WORKERS = 1000  # AWS Lambda's default limit of concurrent executions per account
FULL_BELOW = 64  # below W*, scan every W when there are at most this many, else a ladder
_CHUNK = 200_000  # configurations per vectorised call in the exhaustive search

METHODS: tuple[str, ...] = ("improved", "paper", "exhaustive")


@dataclass(frozen=True)
class Frontier:
    """Pareto-optimal configurations: time ascending, cost strictly descending."""

    time_s: np.ndarray
    cost_usd: np.ndarray
    num_workers: np.ndarray
    num_aggregators: np.ndarray
    memory_mb: np.ndarray

    def __len__(self) -> int:
        return len(self.time_s)

    def config(self, i: int) -> tuple[int, int, int]:
        return int(self.num_workers[i]), int(self.num_aggregators[i]), int(self.memory_mb[i])

    def cheapest_within(self, deadline_s: float) -> int | None:
        i = int(np.searchsorted(self.time_s, deadline_s, side="right")) - 1
        return i if i >= 0 else None

    def fastest_within(self, budget_usd: float) -> int | None:
        within = np.flatnonzero(self.cost_usd <= budget_usd)
        return int(within[0]) if len(within) else None

    def cost_at(self, deadlines_s: np.ndarray) -> np.ndarray:
        """The cheapest cost within each deadline (NaN where nothing meets it)."""
        i = np.searchsorted(self.time_s, deadlines_s, side="right") - 1
        return np.where(i >= 0, self.cost_usd[np.maximum(i, 0)], np.nan)


def empty_frontier() -> Frontier:
    z = np.zeros(0)
    return Frontier(z, z, z.astype(np.int64), z.astype(np.int64), z.astype(np.int64))


def pareto(
    time_s: npt.ArrayLike,
    cost_usd: npt.ArrayLike,
    num_workers: npt.ArrayLike,
    num_aggregators: npt.ArrayLike,
    memory_mb: npt.ArrayLike,
) -> Frontier:
    """The non-dominated points; ties go to fewer workers, fewer aggregators, less memory."""
    t, c = np.asarray(time_s, dtype=float).ravel(), np.asarray(cost_usd, dtype=float).ravel()
    w, k, m = (
        np.asarray(x).ravel().astype(np.int64) for x in (num_workers, num_aggregators, memory_mb)
    )
    if len(t) == 0:
        return empty_frontier()
    order = np.lexsort((m, k, w, c, t))
    t, c, w, k, m = t[order], c[order], w[order], k[order], m[order]
    best_before = np.concatenate(([np.inf], np.minimum.accumulate(c)[:-1]))
    keep = c < best_before
    return Frontier(t[keep], c[keep], w[keep], k[keep], m[keep])


def merge(frontiers: list[Frontier]) -> Frontier:
    if not frontiers:
        return empty_frontier()
    cat = [
        np.concatenate([getattr(f, name) for f in frontiers])
        for name in ("time_s", "cost_usd", "num_workers", "num_aggregators", "memory_mb")
    ]
    return pareto(*cat)


def _ok_frontier(ev: Evaluation) -> Frontier:
    ok = ev.ok
    return pareto(
        ev.time_s[ok], ev.cost_usd[ok], ev.num_workers[ok], ev.num_aggregators[ok], ev.memory_mb[ok]
    )


def _max_k(scenario: Scenario, grid: TransferGrid, max_workers: int) -> int:
    k = min(scenario.max_aggregators, max_workers)
    assert grid.max_k >= k, f"the transfer grid covers K ≤ {grid.max_k}, the search needs {k}"
    return k


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the inclusive ranges [lo_i, hi_i] (empty where hi < lo): (values, i)."""
    counts = np.maximum(hi - lo + 1, 0)
    owner = np.repeat(np.arange(len(lo)), counts)
    starts = np.cumsum(counts) - counts
    values = lo[owner] + (np.arange(counts.sum()) - starts[owner])
    return values.astype(np.int64), owner


def exhaustive_frontier(
    scenario: Scenario,
    grid: TransferGrid,
    max_workers: int = DEFAULT_MAX_WORKERS,
    pattern: str = "kreduce",
) -> tuple[Frontier, int]:
    """Every (W, K, M): K free (``kreduce``), or the synchronous baselines with equal batches,
    K = W (``scatter_reduce``) or K = 1 (``all_reduce``)."""
    mems = grid.memories
    fronts: list[Frontier] = []
    evaluations = 0
    ks = range(1, _max_k(scenario, grid, max_workers) + 1)
    for K in ks if pattern != "all_reduce" else ks[:1]:
        w_max = min(max_workers, scenario.max_workers_for(K))
        ws = np.array([K]) if pattern == "scatter_reduce" else np.arange(K, w_max + 1)
        rows = max(1, _CHUNK // len(mems))
        for start in range(0, len(ws), rows):
            W = ws[start : start + rows, None]
            ev = evaluate(
                scenario,
                W,
                K,
                mems[None, :],
                grid.put_s[K - 1][None, :],
                grid.get_s[K - 1][None, :],
                synchronous=pattern != "kreduce",
            )
            evaluations += ev.time_s.size
            fronts.append(_ok_frontier(ev))
    return merge(fronts), evaluations


def improved_frontier(
    scenario: Scenario, grid: TransferGrid, max_workers: int = DEFAULT_MAX_WORKERS
) -> tuple[Frontier, int]:
    """The frontier from the pruned scan described in the module docstring, vectorised over
    every (K, M) column at once."""
    B = scenario.batch_size_agg
    cap = scenario.global_batch_cap
    n_k = _max_k(scenario, grid, max_workers)
    n_mem = len(grid.memories)
    K = np.repeat(np.arange(1, n_k + 1), n_mem)  # one entry per (K, M) column
    m = np.tile(grid.memories, n_k)
    put, get = grid.put_s[:n_k].ravel(), grid.get_s[:n_k].ravel()
    w_max = np.minimum(
        np.minimum(max_workers, K + np.maximum(0, cap - K * B)), scenario.workers_within_vcpus(m)
    )
    n = len(K)
    evaluations = 0

    # W*: the fewest workers at which the cap binds (w_max + 1 if it never does).
    lo, hi = K + 1, w_max + 1
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        a = active
        by_time = nonagg_batch_by_time(scenario, mid[a], K[a], m[a], put[a], get[a])
        binds = np.zeros(n, dtype=bool)
        binds[a] = by_time >= np.floor((cap - K[a] * B) / (mid[a] - K[a]))
        evaluations += int(a.sum())
        hi = np.where(a & binds, mid, hi)
        lo = np.where(a & ~binds, mid + 1, lo)
    w_star = np.minimum(lo, w_max)  # where the cap never binds, W* is the largest W allowed

    ref = evaluate(scenario, w_star, K, m, put, get)
    evaluations += n
    front = _ok_frontier(ref)
    bounds = _LowerBounds(scenario)

    # Columns dominated even at W = K need nothing more: more workers only raise the bounds.
    alive = ~bounds.dominated(front, K, K, m, put, get)
    evaluations += n

    # Above W*: up to the last W whose lower bounds are not dominated by the frontier so far.
    lo, hi = w_star.copy(), np.where(alive, w_max, w_star)
    while (active := lo < hi).any():
        mid = (lo + hi + 1) // 2
        a = active
        dom = np.zeros(n, dtype=bool)
        dom[a] = bounds.dominated(front, mid[a], K[a], m[a], put[a], get[a])
        evaluations += int(a.sum())
        hi = np.where(a & dom, mid - 1, hi)
        lo = np.where(a & ~dom, mid, lo)
    above_w, above_i = _ranges(w_star + 1, lo)

    # Below W*: all of it when short, else its top FULL_BELOW and a ladder K, K+1, K+2, K+4, …
    top = np.where(alive, w_star - 1, K - 1)
    below_w, below_i = _ranges(np.maximum(K, w_star - FULL_BELOW), top)
    steps = np.concatenate(([0], 2 ** np.arange(0, int(np.log2(max(2, int(w_max.max())))) + 1)))
    lad_w = K[:, None] + steps[None, :]
    lad_i = np.repeat(np.arange(n)[:, None], len(steps), axis=1)
    on_ladder = (lad_w < (w_star - FULL_BELOW)[:, None]) & alive[:, None]

    W = np.concatenate([below_w, lad_w[on_ladder], above_w])
    i = np.concatenate([below_i, lad_i[on_ladder], above_i])
    fronts = [front]
    for start in range(0, len(W), _CHUNK):
        j = i[start : start + _CHUNK]
        ev = evaluate(scenario, W[start : start + _CHUNK], K[j], m[j], put[j], get[j])
        evaluations += len(j)
        fronts.append(_ok_frontier(ev))
    return merge(fronts), evaluations


class _LowerBounds:
    """Lower bounds of time and cost that grow with W at fixed (K, M): the fewest iterations any
    configuration can run (the capped global batch) times the iteration, which grows by one get
    per worker; and the compute, invocations and store requests those iterations must pay."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.min_iterations = (scenario.samples // scenario.global_batch_cap) * scenario.epochs
        p = scenario.prices
        self.gb_s, self.inv = p.usd_per_gb_second, p.usd_per_invocation
        self.put_usd, self.get_usd = p.request_usd("PUT"), p.request_usd("GET")

    def dominated(
        self,
        frontier: Frontier,
        W: np.ndarray,
        K: np.ndarray,
        M: np.ndarray,
        put: np.ndarray,
        get: np.ndarray,
    ) -> np.ndarray:
        """True where every configuration with at least W workers is dominated by ``frontier``."""
        if not len(frontier):
            return np.zeros(np.broadcast(W, M).shape, dtype=bool)
        ev_iter = _iteration_only(self.scenario, W, K, M, put, get)
        n = self.min_iterations
        W = np.asarray(W, dtype=float)
        t_lb = n * ev_iter
        c_lb = (
            self.gb_s * W * np.asarray(M) / MB_PER_GB * t_lb
            + self.inv * W
            + n * (W * K * self.put_usd + 2 * K * (W - 1) * self.get_usd)
        )
        slack = 1 - 1e-12  # rounding must never prune a point the exact model would keep
        with np.errstate(invalid="ignore"):
            # NaN (nothing that fast): False
            dominated: np.ndarray = frontier.cost_at(t_lb * slack) <= c_lb * slack
            return dominated


def paper_heuristic(
    scenario: Scenario,
    grid: TransferGrid,
    deadline_s: float,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> tuple[tuple[int, int, int] | None, int]:
    """The seed's pruning heuristic, on our model: for W = 1 … Bg_max/B with K = W, the first
    memory (ascending) that meets the deadline and is cheaper than the best so far; then, at the
    best (W, M), lower K while the predicted time falls. Evaluations are counted as the scalar
    algorithm makes them."""
    mems = grid.memories
    evaluations = 0
    best: tuple[int, int] | None = None
    best_cost = np.inf
    for W in range(1, _max_k(scenario, grid, max_workers) + 1):
        ev = evaluate(scenario, W, W, mems, grid.put_s[W - 1], grid.get_s[W - 1])
        evaluations += 1  # the check at the largest memory
        if not ev.ok[-1] or ev.time_s[-1] > deadline_s:
            continue
        good = np.flatnonzero(ev.ok & (ev.time_s <= deadline_s) & (ev.cost_usd < best_cost))
        if len(good):
            i = int(good[0])
            evaluations += i + 1
            best, best_cost = (W, i), float(ev.cost_usd[i])
        else:
            evaluations += len(mems)
    if best is None:
        return None, evaluations
    W, i = best
    K = W
    current = float(
        evaluate(scenario, W, W, mems[i], grid.put_s[W - 1][i], grid.get_s[W - 1][i]).time_s
    )
    while K > 1:
        ev = evaluate(scenario, W, K - 1, mems[i], grid.put_s[K - 2][i], grid.get_s[K - 2][i])
        evaluations += 1
        if not (bool(ev.ok) and float(ev.time_s) < current):
            break
        K, current = K - 1, float(ev.time_s)
    return (W, K, int(mems[i])), evaluations


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    method: str
    choice: tuple[int, int, int] | None  # (W, K, M), None when nothing meets the constraint
    frontier: Frontier | None  # None for the paper's heuristic, which builds none
    evaluations: int
    seconds: float


def search(
    scenario: Scenario,
    grid: TransferGrid,
    *,
    method: str = "improved",
    deadline_s: float | None = None,
    budget_usd: float | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> SearchResult:
    """The cheapest configuration within ``deadline_s``, or the fastest within ``budget_usd``."""
    if (deadline_s is None) == (budget_usd is None):
        raise InvalidInput(
            "objective",
            "give exactly one of a deadline (cost objective) or a budget (time objective)",
        )
    if method not in METHODS:
        raise InvalidInput(
            "heuristic", f"unknown search {method!r}", f"choose one of {', '.join(METHODS)}"
        )
    start = _time.perf_counter()
    if method == "paper":
        if deadline_s is None:
            raise InvalidInput(
                "heuristic",
                "the paper's heuristic minimises cost under a deadline only",
                "use --objective cost, or --heuristic improved",
            )
        choice, evaluations = paper_heuristic(scenario, grid, deadline_s, max_workers)
        return SearchResult(
            method=method,
            choice=choice,
            frontier=None,
            evaluations=evaluations,
            seconds=_time.perf_counter() - start,
        )
    build = improved_frontier if method == "improved" else exhaustive_frontier
    frontier, evaluations = build(scenario, grid, max_workers)
    if deadline_s is not None:
        i = frontier.cheapest_within(deadline_s)
    else:
        assert budget_usd is not None
        i = frontier.fastest_within(budget_usd)
    return SearchResult(
        method=method,
        choice=frontier.config(i) if i is not None else None,
        frontier=frontier,
        evaluations=evaluations,
        seconds=_time.perf_counter() - start,
    )

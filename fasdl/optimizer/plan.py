"""``optimize``: from a scenario and a transfer model to a frozen Plan that ``fasdl train`` runs.

The plan carries the five fields of the trainer's payload (batch_size_agg, num_workers,
memory_mb, batch_size_wor, num_aggregators) and, beside them, the model's prediction and the
comparison with ScatterReduce (K = W) and AllReduce (K = 1) at the same W and M.

Inside the package a plan uses JobConfig's names; its JSON (``to_dict``, ``fasdl optimize
--json``) uses the seed's payload names (``memory``, ``pattern_k``, ``func_time``), which
``fasdl train --plan`` reads like a seed payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fasdl.errors import InvalidInput, NoPlan
from fasdl.optimizer.grid import TransferGrid, memory_grid, predict, transfer_grid
from fasdl.optimizer.model import Prediction, Scenario, evaluate, prediction_at
from fasdl.optimizer.search import (
    DEFAULT_MAX_WORKERS,
    Frontier,
    exhaustive_frontier,
    improved_frontier,
    search,
)
from fasdl.perf.coefficients import Coefficients
from fasdl.perf.transfer import TransferModel
from fasdl.platform.limits import MIN_MEMORY_MB
from fasdl.validate import positive_number, whole_number

# Every key of ``Plan.to_dict`` (``fasdl optimize --json``): ``fasdl train --plan`` accepts them,
# the job's own among them, and ignores the prediction's.
PLAN_JSON_KEYS = frozenset(
    {
        "batch_size_agg",
        "num_workers",
        "memory",
        "batch_size_wor",
        "pattern_k",
        "epochs",
        "samples",
        "func_time",
        "predicted_time_s",
        "predicted_cost_usd",
        "breakdown",
        "scatter_reduce",
        "all_reduce",
        "objective",
        "deadline_s",
        "budget_usd",
        "search",
        "warnings",
        "wire",
    }
)


@dataclass(frozen=True, kw_only=True)
class Plan:
    batch_size_agg: int
    num_workers: int
    memory_mb: int
    batch_size_wor: int
    num_aggregators: int
    epochs: int
    samples: int
    func_time_s: float
    objective: str  # "cost" (under deadline_s) or "time" (under budget_usd)
    deadline_s: float | None
    budget_usd: float | None
    prediction: Prediction
    # The synchronous baselines at the same W, M and global batch (W equal batches of Bg/W):
    scatter_reduce: Prediction  # K = W
    all_reduce: Prediction  # K = 1, every worker waits for merged(t)
    method: str
    evaluations: int
    search_seconds: float
    warnings: tuple[str, ...] = ()
    wire: str = "fp32"  # the wire format priced (JobConfig's field: ``fasdl train --plan`` uses it)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``fasdl optimize --json``, which ``fasdl train --plan`` reads: the
        seed's payload names (the payload edge)."""
        return {
            "batch_size_agg": self.batch_size_agg,
            "num_workers": self.num_workers,
            "memory": self.memory_mb,
            "batch_size_wor": self.batch_size_wor,
            "pattern_k": self.num_aggregators,
            "epochs": self.epochs,
            "samples": self.samples,
            "func_time": self.func_time_s,
            "predicted_time_s": self.prediction.time_s,
            "predicted_cost_usd": self.prediction.total_cost_usd,
            "breakdown": self.prediction.breakdown(),
            "scatter_reduce": self._against(self.scatter_reduce),
            "all_reduce": self._against(self.all_reduce),
            "objective": self.objective,
            "deadline_s": self.deadline_s,
            "budget_usd": self.budget_usd,
            "search": {
                "method": self.method,
                "evaluations": self.evaluations,
                "seconds": self.search_seconds,
            },
            "warnings": list(self.warnings),
            "wire": self.wire,
        }

    def _against(self, other: Prediction) -> dict[str, Any]:
        return {
            "num_workers": other.num_workers,
            "pattern_k": other.num_aggregators,
            "memory": other.memory_mb,
            "batch_size_agg": other.batch_size_agg,
            "batch_size_wor": other.batch_size_wor,
            "global_batch": other.global_batch,
            "iterations": other.iterations,
            "time_s": other.time_s,
            "cost_usd": other.total_cost_usd,
            "problem": other.problem,  # why it could not run as configured (None: it could)
            "time_saved_pct": savings_pct(other.time_s, self.prediction.time_s),
            "cost_saved_pct": savings_pct(other.total_cost_usd, self.prediction.total_cost_usd),
        }


def baseline(
    scenario: Scenario, transfer: TransferModel, plan: Prediction, num_aggregators: int
) -> Prediction:
    """A synchronous baseline (ScatterReduce: K = W; AllReduce: K = 1) at the plan's W and M and
    its global batch, split into W equal batches (rounded: within W−1 samples of the plan's), so
    both run the same number of iterations and differ only in how they communicate and wait."""
    W = plan.num_workers
    return predict(
        scenario,
        transfer,
        W,
        num_aggregators,
        plan.memory_mb,
        synchronous=True,
        batch_size_agg=max(1, round(plan.global_batch / W)),
    )


def savings_pct(baseline: float, ours: float) -> float | None:
    if not math.isfinite(baseline) or baseline <= 0:
        return None
    return 100.0 * (baseline - ours) / baseline


def search_space(
    scenario: Scenario,
    transfer: TransferModel,
    memories: np.ndarray | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> TransferGrid:
    """Check the space is not empty and tabulate its transfer times.

    No memory below the coefficients' ``min_memory_mb`` (the profile ran out of memory there) is
    searched: the default grid starts at it, and smaller ``memories`` are left out.
    """
    whole_number(max_workers, "max_workers", minimum=1)
    floor = scenario.coeffs.min_memory_mb
    if memories is None:
        mems = memory_grid(max(MIN_MEMORY_MB, floor or MIN_MEMORY_MB))
    else:
        mems = np.asarray(memories)
    if floor is not None:
        mems = mems[mems >= floor]
        if not len(mems):
            raise InvalidInput(
                "max_memory",
                f"every memory searched is below {floor} MB, the smallest at which the profile "
                "ran without running out of memory (coeffs' min_memory_mb)",
                f"raise --max-memory to {floor} MB or more",
            )
    B = scenario.batch_size_agg
    if scenario.max_aggregators < 1:
        raise InvalidInput(
            "max_global_batch",
            f"the aggregators' batch B = {B} (from b = {scenario.coeffs.b:g} and γ = {scenario.gamma:g}) "
            f"exceeds the global batch cap {scenario.global_batch_cap}",
            "raise --max-global-batch or lower --gamma",
        )
    if not mems[-1] + scenario.coeffs.m > 0:
        raise InvalidInput(
            "coeffs: m", f"M + m ≤ 0 at every memory up to {int(mems[-1])} MB", "check the fit"
        )
    return transfer_grid(
        transfer, scenario.wire_size_mb, min(scenario.max_aggregators, max_workers), mems
    )


def optimize(
    scenario: Scenario,
    transfer: TransferModel,
    *,
    deadline_s: float | None = None,
    budget_usd: float | None = None,
    method: str = "improved",
    memories: np.ndarray | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> Plan:
    """The cheapest plan within ``deadline_s`` or the fastest within ``budget_usd``.

    Raises ``NoPlan`` (a ``PlanInfeasible``) when nothing meets the constraint."""
    if deadline_s is not None:
        positive_number(deadline_s, "deadline", unit="s")
    if budget_usd is not None:
        positive_number(budget_usd, "budget", unit="USD")
    grid = search_space(scenario, transfer, memories, max_workers)
    result = search(
        scenario,
        grid,
        method=method,
        deadline_s=deadline_s,
        budget_usd=budget_usd,
        max_workers=max_workers,
    )
    if result.choice is None:
        frontier = (
            result.frontier
            if result.frontier is not None
            else improved_frontier(scenario, grid, max_workers)[0]
        )
        raise _no_plan(scenario, transfer, frontier, deadline_s, budget_usd, int(grid.memories[-1]))
    W, K, M = result.choice
    i = int(np.flatnonzero(grid.memories == M)[0])
    chosen = prediction_at(
        evaluate(scenario, W, K, M, grid.put_s[K - 1][i], grid.get_s[K - 1][i]),
        scenario.batch_size_agg,
    )
    return _plan(
        scenario,
        transfer,
        chosen,
        (W, K, M),
        objective="cost" if deadline_s is not None else "time",
        deadline_s=deadline_s,
        budget_usd=budget_usd,
        search=(result.method, result.evaluations, result.seconds),
    )


def plan_at(
    scenario: Scenario,
    transfer: TransferModel,
    num_workers: int,
    num_aggregators: int,
    memory_mb: int,
) -> Plan:
    """The plan of one given configuration, priced as ``optimize`` prices its choice (no search:
    to run and check a configuration of one's own). Raises ``NoPlan`` if it cannot run."""
    chosen = predict(scenario, transfer, num_workers, num_aggregators, memory_mb)
    if chosen.problem is not None:
        raise NoPlan(
            f"num_workers={num_workers}, pattern_k={num_aggregators}, memory={memory_mb} cannot "
            f"run: {chosen.problem}",
            fastest_time_s=None,
            cheapest_cost_usd=None,
        )
    return _plan(
        scenario,
        transfer,
        chosen,
        (num_workers, num_aggregators, memory_mb),
        objective="cost",
        deadline_s=None,
        budget_usd=None,
        search=("given", 1, 0.0),
    )


def _plan(
    scenario: Scenario,
    transfer: TransferModel,
    chosen: Prediction,
    config: tuple[int, int, int],
    *,
    objective: str,
    deadline_s: float | None,
    budget_usd: float | None,
    search: tuple[str, int, float],
) -> Plan:
    """The ``Plan`` of ``chosen`` at ``config`` (W, K, M), with its baselines at the same W, M
    and global batch; ``search`` is (method, evaluations, seconds)."""
    W, K, M = config
    method, evaluations, seconds = search
    return Plan(
        batch_size_agg=chosen.batch_size_agg,
        num_workers=W,
        memory_mb=M,
        batch_size_wor=chosen.batch_size_wor,
        num_aggregators=K,
        epochs=scenario.epochs,
        samples=scenario.samples,
        func_time_s=scenario.func_time_s,
        objective=objective,
        deadline_s=deadline_s,
        budget_usd=budget_usd,
        prediction=chosen,
        scatter_reduce=baseline(scenario, transfer, chosen, W),
        all_reduce=baseline(scenario, transfer, chosen, 1),
        method=method,
        evaluations=evaluations,
        search_seconds=seconds,
        warnings=extrapolation_warnings(scenario.coeffs, M),
        wire=scenario.wire,
    )


EXTRAPOLATION_FACTOR = 1.5  # a plan's memory this far above the largest profiled one is flagged


def extrapolation_warnings(coeffs: Coefficients, memory_mb: int) -> tuple[str, ...]:
    """What a plan at ``memory_mb`` takes on trust: training times beyond the profiled memory."""
    top = coeffs.max_memory_mb
    if top is None or memory_mb <= EXTRAPOLATION_FACTOR * top:
        return ()
    return (
        f"memory {memory_mb} MB is {memory_mb / top:.1f}× the largest profiled ({top} MB): its "
        f"training time is the fit's extrapolation (profile up to {memory_mb} MB to check it, "
        f"or cap the plan with --max-memory {top})",
    )


def _no_plan(
    scenario: Scenario,
    transfer: TransferModel,
    frontier: Frontier,
    deadline_s: float | None,
    budget_usd: float | None,
    max_memory: int,
) -> NoPlan:
    if not len(frontier):
        why = predict(scenario, transfer, 1, 1, max_memory).problem
        return NoPlan(
            f"no configuration can run under the model (one worker at the largest memory: {why})",
            fastest_time_s=None,
            cheapest_cost_usd=None,
        )
    fast = frontier.config(0)
    cheap = frontier.config(len(frontier) - 1)

    def cfg(c: tuple[int, int, int]) -> str:
        return f"num_workers={c[0]}, pattern_k={c[1]}, memory={c[2]}"

    if deadline_s is not None:
        msg = (
            f"no plan meets the deadline of {deadline_s:,.0f} s: the fastest plan takes "
            f"{frontier.time_s[0]:,.0f} s ({cfg(fast)}, ${frontier.cost_usd[0]:,.2f}); "
            "give a longer --deadline, fewer --epochs or a larger --max-global-batch"
        )
    else:
        msg = (
            f"no plan costs at most ${budget_usd:,.2f}: the cheapest plan costs "
            f"${frontier.cost_usd[-1]:,.2f} ({cfg(cheap)}, {frontier.time_s[-1]:,.0f} s); give a larger --budget"
        )
    return NoPlan(
        msg,
        fastest_time_s=float(frontier.time_s[0]),
        cheapest_cost_usd=float(frontier.cost_usd[-1]),
    )


def pattern_frontiers(
    scenario: Scenario,
    grid: TransferGrid,
    *,
    exhaustive: bool = False,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> dict[str, Frontier]:
    """Cost against time for K-Reduce (K free), ScatterReduce (K = W) and AllReduce (K = 1)."""
    kreduce = (exhaustive_frontier if exhaustive else improved_frontier)(
        scenario, grid, max_workers
    )[0]
    return {
        "K-Reduce": kreduce,
        "ScatterReduce": exhaustive_frontier(scenario, grid, max_workers, pattern="scatter_reduce")[
            0
        ],
        "AllReduce": exhaustive_frontier(scenario, grid, max_workers, pattern="all_reduce")[0],
    }

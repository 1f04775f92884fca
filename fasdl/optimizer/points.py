"""Points of a frontier worth running: deadlines that pick them and a spread of a few of them.

To measure the model against real runs, one wants a few plans across the frontier (the fastest,
the cheapest, one between) and, for each, a deadline under which ``optimize`` chooses exactly
that plan. Pure functions of a Frontier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fasdl.optimizer.search import Frontier


@dataclass(frozen=True)
class FrontierPoint:
    """One configuration of a frontier, with the memory cap the frontier was searched under."""

    time_s: float
    cost_usd: float
    num_workers: int
    num_aggregators: int
    memory_mb: int
    max_memory_mb: int

    @property
    def config(self) -> tuple[int, int, int]:
        """(W, K, M)."""
        return self.num_workers, self.num_aggregators, self.memory_mb


def frontier_points(frontier: Frontier, *, max_memory_mb: int) -> list[FrontierPoint]:
    """The frontier as points, in its order (time ascending, cost descending)."""
    return [
        FrontierPoint(
            float(frontier.time_s[i]),
            float(frontier.cost_usd[i]),
            *frontier.config(i),
            max_memory_mb,
        )
        for i in range(len(frontier))
    ]


def deadline_for(points: Sequence[FrontierPoint], i: int) -> float:
    """A deadline whose cheapest plan is points[i]: at least its time, below the next one's.

    5 % above its time when that stays below the midpoint to the next point, else that midpoint;
    rounded down to a tenth of a second but never below the point's own time."""
    t = points[i].time_s
    upper = points[i + 1].time_s if i + 1 < len(points) else math.inf
    d = min(t * 1.05, (t + upper) / 2)
    return max(t, math.floor(d * 10) / 10)


@dataclass(frozen=True)
class ChosenRun:
    """A point to run, the deadline that picks it, and a label for the report."""

    label: str
    point: FrontierPoint
    deadline_s: float


def choose_runs(
    full: Sequence[FrontierPoint],
    small: Sequence[FrontierPoint] | None,
    *,
    small_memory_mb: int,
    max_run_s: float,
) -> list[ChosenRun]:
    """Up to three points predicted to train within ``max_run_s``.

    From ``full`` (a frontier, sorted by time): the fastest ("tight"), the cheapest ("loose")
    and the one halfway between ("middle"), as many as there are. When that gives fewer than
    three, the fastest point of ``small`` (the frontier under a cap of ``small_memory_mb``:
    more, smaller functions) is added if it is not already chosen."""
    n = sum(p.time_s <= max_run_s for p in full)
    picks = [("tight", 0)] if n else []
    if n >= 3:
        picks.append(("middle", (n - 1) // 2))
    if n >= 2:
        picks.append(("loose", n - 1))
    runs = [ChosenRun(label, full[i], deadline_for(full, i)) for label, i in picks]
    if len(runs) < 3 and small and small[0].time_s <= max_run_s:
        p = small[0]
        if p.config not in {r.point.config for r in runs}:
            runs.append(ChosenRun(f"tight, M<={small_memory_mb}", p, deadline_for(small, 0)))
    return runs

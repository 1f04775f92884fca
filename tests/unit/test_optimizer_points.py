"""Points of a frontier to run: deadlines that pick them, and which ones to pick."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fasdl.optimizer.points import (
    ChosenRun,
    FrontierPoint,
    choose_runs,
    deadline_for,
    frontier_points,
)
from fasdl.optimizer.search import Frontier, pareto


def _frontier(times: list[float], first_w: int = 2) -> Frontier:
    """A frontier with these (ascending) times, costs falling with them, W from ``first_w``."""
    n = len(times)
    return pareto(
        times,
        [10.0 - i for i in range(n)],
        [first_w + i for i in range(n)],
        [1 + i % 2 for i in range(n)],
        [512 + 64 * i for i in range(n)],
    )


def _points(times: list[float], max_memory_mb: int = 1769) -> list[FrontierPoint]:
    # The small-memory frontiers get other configurations than the full ones.
    first_w = 2 if max_memory_mb == 1769 else 20
    return frontier_points(_frontier(times, first_w), max_memory_mb=max_memory_mb)


def test_points_follow_the_frontier() -> None:
    f = _frontier([1.5, 4.0, 9.0])
    pts = frontier_points(f, max_memory_mb=885)
    assert len(pts) == len(f)
    for i, p in enumerate(pts):
        assert (p.time_s, p.cost_usd) == (f.time_s[i], f.cost_usd[i])
        assert p.config == f.config(i)
        assert p.max_memory_mb == 885
        assert type(p.time_s) is float and all(type(x) is int for x in p.config)
    assert frontier_points(_frontier([]), max_memory_mb=885) == []


# Ascending times a millisecond or more apart (a frontier's times are distinct).
times_st = st.lists(st.floats(min_value=1e-3, max_value=1e4), min_size=1, max_size=12).map(
    lambda gaps: [float(t) for t in np.cumsum(gaps)]
)


@given(times_st)
def test_the_deadline_picks_its_point(times: list[float]) -> None:
    f = _frontier(times)
    pts = frontier_points(f, max_memory_mb=1769)
    for i in range(len(pts)):
        d = deadline_for(pts, i)
        assert d >= pts[i].time_s
        assert f.cheapest_within(d) == i


def test_deadline_is_five_percent_above_or_the_midpoint() -> None:
    pts = _points([100.0, 200.0, 203.0])
    assert deadline_for(pts, 0) == pytest.approx(105.0)  # 5 % above: below the midpoint 150
    assert deadline_for(pts, 1) == pytest.approx(201.5)  # the midpoint: 5 % would pass 203
    assert deadline_for(pts, 2) == pytest.approx(np.floor(203.0 * 1.05 * 10) / 10)  # the last


def _labels(runs: list[ChosenRun]) -> list[str]:
    return [r.label for r in runs]


def test_three_or_more_within_reach_give_fastest_middle_cheapest() -> None:
    times = [10.0, 20.0, 30.0, 40.0, 50.0, 500.0]
    full = _points(times)
    within = sum(t <= 60 for t in times)
    runs = choose_runs(full, _points([5.0], 885), small_memory_mb=885, max_run_s=60)
    assert _labels(runs) == ["tight", "middle", "loose"]
    assert [r.point for r in runs] == [full[0], full[(within - 1) // 2], full[within - 1]]
    assert [r.deadline_s for r in runs] == [deadline_for(full, full.index(r.point)) for r in runs]


def test_two_within_reach_add_the_fastest_small_memory_plan() -> None:
    full = _points([10.0, 20.0, 500.0])
    small = _points([15.0, 30.0], 885)
    runs = choose_runs(full, small, small_memory_mb=885, max_run_s=60)
    assert _labels(runs) == ["tight", "loose", "tight, M<=885"]
    assert runs[2].point == small[0] and runs[2].deadline_s == deadline_for(small, 0)


def test_the_small_memory_plan_is_not_run_twice() -> None:
    full = _points([10.0])
    same = [FrontierPoint(10.0, 10.0, *full[0].config, 885)]  # the same (W, K, M)
    runs = choose_runs(full, same, small_memory_mb=885, max_run_s=60)
    assert _labels(runs) == ["tight"]


@pytest.mark.parametrize("small_times", [[], [61.0]])
def test_nothing_within_reach(small_times: list[float]) -> None:
    small = _points(small_times, 885) or None
    assert choose_runs(_points([70.0, 80.0]), small, small_memory_mb=885, max_run_s=60) == []


def test_only_the_small_memory_plan_within_reach() -> None:
    small = _points([50.0], 885)
    runs = choose_runs(_points([70.0]), small, small_memory_mb=885, max_run_s=60)
    assert [(r.label, r.point) for r in runs] == [("tight, M<=885", small[0])]

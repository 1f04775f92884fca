"""The searches: ours against the exhaustive one, monotonicity, and the paper's failure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fasdl.optimizer.grid import memory_grid, predict
from fasdl.optimizer.model import Scenario, evaluate
from fasdl.optimizer.plan import NoPlan, optimize, search_space
from fasdl.optimizer.search import exhaustive_frontier, improved_frontier, paper_heuristic, search
from fasdl.perf.coefficients import Coefficients
from fasdl.perf.transfer import load_transfer
from fasdl.pricing import load_prices

PRICES = load_prices("aws")
AWS = load_transfer("aws")
COARSE = memory_grid(128, 10240, 512)  # keeps the exhaustive search quick


class LinearTransfer:
    def put_s(self, size_mb: float, memory_mb: float) -> float:
        return 0.08 + size_mb / (15 + memory_mb / 80)

    def get_s(self, size_mb: float, memory_mb: float) -> float:
        return 0.03 + size_mb / (30 + memory_mb / 40)

    def to_dict(self):
        return {"kind": "test"}


TRANSFERS = st.sampled_from([AWS, LinearTransfer()])


@st.composite
def scenarios(draw) -> Scenario:
    """ResNet-18-ish coefficients: a 300–1000 s·MB/sample, b 5–20, m 0–500, T_trans 0.1–1 s."""
    k2 = draw(st.floats(-0.3, 0.1))
    trans_at_1gb = draw(st.floats(0.1, 1.0))
    coeffs = Coefficients.from_dict(
        {
            "a": draw(st.floats(300, 1000)),
            "b": draw(st.floats(5, 20)),
            "m": draw(st.floats(0, 500)),
            "k1": trans_at_1gb / 1024**k2,
            "k2": k2,
            "model_size_mb": draw(st.floats(10, 100)),
        }
    )
    return Scenario(
        coeffs=coeffs,
        prices=PRICES,
        samples=draw(st.integers(10_000, 60_000)),
        epochs=draw(st.integers(1, 20)),
        max_global_batch=draw(st.sampled_from([256, 512, 1024])),
        gamma=draw(st.floats(0.7, 0.9)),
    )


@st.composite
def capped_scenarios(draw) -> Scenario:
    """The scenarios above with a cap on the vCPUs running at once (a laptop's to a small cloud's)."""
    return dataclasses.replace(draw(scenarios()), max_vcpus=draw(st.floats(1.0, 64.0)))


def _evaluate(s: Scenario, grid, choice):
    W, K, M = choice
    i = int(np.flatnonzero(grid.memories == M)[0])
    return evaluate(s, W, K, M, grid.put_s[K - 1][i], grid.get_s[K - 1][i])


def _cost(s: Scenario, grid, choice) -> float:
    return float(_evaluate(s, grid, choice).cost_usd)


def _time(s: Scenario, grid, choice) -> float:
    return float(_evaluate(s, grid, choice).time_s)


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(s=scenarios(), transfer=TRANSFERS, slack=st.floats(0.9, 30))
@SETTINGS
def test_improved_within_one_percent_of_exhaustive(s, transfer, slack):
    grid = search_space(s, transfer, COARSE)
    fastest = exhaustive_frontier(s, grid)[0].time_s[0]
    deadline = fastest * slack
    exact = search(s, grid, method="exhaustive", deadline_s=deadline)
    ours = search(s, grid, method="improved", deadline_s=deadline)
    assert (ours.choice is None) == (exact.choice is None)
    if exact.choice is not None:
        assert _cost(s, grid, ours.choice) <= 1.01 * _cost(s, grid, exact.choice)
        assert ours.evaluations < exact.evaluations


@given(s=capped_scenarios(), transfer=TRANSFERS, slack=st.floats(0.9, 30))
@SETTINGS
def test_a_vcpu_cap_is_kept_and_ours_still_matches_exhaustive(s, transfer, slack):
    grid = search_space(s, transfer, COARSE)
    front = exhaustive_frontier(s, grid)[0]
    if not len(front):
        return  # nothing fits the cap (a cap below one function of the smallest useful memory)
    deadline = front.time_s[0] * slack
    exact = search(s, grid, method="exhaustive", deadline_s=deadline)
    ours = search(s, grid, method="improved", deadline_s=deadline)
    assert (ours.choice is None) == (exact.choice is None)
    if exact.choice is not None:
        assert _cost(s, grid, ours.choice) <= 1.01 * _cost(s, grid, exact.choice)
        for W, _, M in (ours.choice, exact.choice):
            vcpus = W * M / 1769
            assert vcpus <= s.max_vcpus + 1e-9


@given(s=scenarios(), transfer=TRANSFERS, slack=st.floats(1.0, 10))
@SETTINGS
def test_time_objective_matches_exhaustive(s, transfer, slack):
    grid = search_space(s, transfer, COARSE)
    cheapest = exhaustive_frontier(s, grid)[0].cost_usd[-1]
    exact = search(s, grid, method="exhaustive", budget_usd=cheapest * slack)
    ours = search(s, grid, method="improved", budget_usd=cheapest * slack)
    assert exact.choice is not None and ours.choice is not None
    assert _time(s, grid, ours.choice) <= 1.01 * _time(s, grid, exact.choice)
    assert _cost(s, grid, ours.choice) <= cheapest * slack


@given(s=scenarios(), transfer=TRANSFERS, d1=st.floats(0.5, 20), d2=st.floats(0.5, 20))
@SETTINGS
def test_a_looser_deadline_never_gives_a_dearer_plan(s, transfer, d1, d2):
    grid = search_space(s, transfer, COARSE)
    fastest = improved_frontier(s, grid)[0].time_s[0]
    tight, loose = sorted((d1, d2))
    a = search(s, grid, deadline_s=fastest * tight)
    b = search(s, grid, deadline_s=fastest * loose)
    if a.choice is not None:
        assert b.choice is not None
        assert _cost(s, grid, b.choice) <= _cost(s, grid, a.choice)


@given(
    s=scenarios(),
    transfer=TRANSFERS,
    slack=st.floats(1.0, 20),
    method=st.sampled_from(["improved", "paper", "exhaustive"]),
)
@SETTINGS
def test_every_plan_meets_its_deadline(s, transfer, slack, method):
    fastest = improved_frontier(s, search_space(s, transfer, COARSE))[0].time_s[0]
    deadline = fastest * slack
    try:
        plan = optimize(s, transfer, deadline_s=deadline, method=method, memories=COARSE)
    except NoPlan:
        assert method == "paper"  # ours and the exhaustive search find the fastest plan
        return
    assert plan.prediction.time_s <= deadline
    again = predict(
        s, transfer, plan.num_workers, plan.num_aggregators, plan.memory_mb
    )  # straight from the protocol
    assert again.problem is None
    assert again.time_s == pytest.approx(plan.prediction.time_s, rel=1e-9)
    assert plan.scatter_reduce.num_aggregators == plan.num_workers
    assert plan.all_reduce.num_aggregators == 1


@given(s=scenarios(), transfer=TRANSFERS)
@settings(max_examples=10, deadline=None)
def test_frontier_is_a_pareto_frontier(s, transfer):
    grid = search_space(s, transfer, COARSE)
    f, _ = improved_frontier(s, grid)
    assert len(f) > 0
    assert np.all(np.diff(f.time_s) > 0) and np.all(np.diff(f.cost_usd) < 0)
    for i in range(0, len(f), max(1, len(f) // 10)):
        ev = _evaluate(s, grid, f.config(i))
        assert bool(ev.ok) and float(ev.time_s) == pytest.approx(f.time_s[i])


def _resnet_like() -> Scenario:
    return Scenario(
        coeffs=Coefficients.from_dict(
            {"a": 600, "b": 10, "m": 200, "k1": 0.5, "k2": 0.0, "model_size_mb": 45}
        ),
        prices=PRICES,
        samples=50_000,
        epochs=10,
    )


def test_infeasible_deadline_names_the_fastest_time():
    s = _resnet_like()
    fastest = exhaustive_frontier(s, search_space(s, AWS, COARSE))[0].time_s[0]
    with pytest.raises(NoPlan) as e:
        optimize(s, AWS, deadline_s=fastest * 0.99, memories=COARSE)
    assert e.value.fastest_time_s == pytest.approx(fastest)
    assert f"{fastest:,.0f} s" in str(e.value)
    assert optimize(s, AWS, deadline_s=fastest, memories=COARSE).prediction.time_s == pytest.approx(
        fastest
    )


def test_improved_is_much_cheaper_than_exhaustive_on_a_full_grid():
    s = _resnet_like()
    grid = search_space(s, AWS)  # 64 MB steps up to 10,240 MB
    ours, n_ours = improved_frontier(s, grid)
    exact, n_exact = exhaustive_frontier(s, grid)
    assert n_ours * 10 < n_exact
    assert np.allclose(ours.time_s, exact.time_s) and np.allclose(ours.cost_usd, exact.cost_usd)


# A coefficient set (AWS transfer table and prices) on which the paper's heuristic picks a dearer
# plan for a looser deadline: the seed's failure (issue 5: $2.1 at 28,800 s, $1.7 at 14,400 s).
PAPER_FAILS = {"a": 400, "b": 6, "m": 1, "k1": 1.0, "k2": -0.2, "model_size_mb": 45}


def test_paper_heuristic_is_not_monotone_and_ours_is():
    s = Scenario(
        coeffs=Coefficients.from_dict(PAPER_FAILS), prices=PRICES, samples=50_000, epochs=10
    )
    grid = search_space(s, AWS)
    paper = {d: paper_heuristic(s, grid, d)[0] for d in (18_000, 21_600)}
    tight, loose = (_cost(s, grid, paper[d]) for d in (18_000, 21_600))
    assert loose > tight * 1.1  # dearer for the looser deadline...
    assert (
        float(predict(s, AWS, *paper[18_000]).time_s) <= 21_600
    )  # ...though the cheaper plan meets it
    ours = {d: search(s, grid, deadline_s=d).choice for d in (18_000, 21_600)}
    assert _cost(s, grid, ours[21_600]) <= _cost(s, grid, ours[18_000]) <= tight


def test_paper_heuristic_needs_a_deadline():
    s = Scenario(
        coeffs=Coefficients.from_dict(PAPER_FAILS), prices=PRICES, samples=50_000, epochs=1
    )
    with pytest.raises(ValueError, match="deadline"):
        search(s, search_space(s, AWS, COARSE), method="paper", budget_usd=10.0)

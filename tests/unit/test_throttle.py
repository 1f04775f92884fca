"""The CPU budget (pure): quota per period, debt carried, credit dropped, exact long-run rate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fasdl.platform.throttle import CpuBudget


def simulate(
    vcpus: float, threads: int, seconds: float, tick_s: float, period_s: float = 0.05
) -> float:
    """A CPU-bound process with ``threads`` threads, sampled every ``tick_s``: its CPU rate."""
    budget = CpuBudget(vcpus, now=0.0, cpu_s=0.0, period_s=period_s)
    now = cpu = 0.0
    running = True
    while now < seconds:
        if running:
            cpu += threads * tick_s
        now += tick_s
        running = budget.update(now, cpu, max_rate=threads).run
    return cpu / seconds


@pytest.mark.parametrize(
    ("vcpus", "threads"),
    [(0.25, 1), (0.5, 1), (0.75, 1), (0.25, 2), (0.5, 2), (1.5, 2), (0.25, 4), (1.5, 4)],
)
def test_long_run_rate_is_the_share(vcpus, threads):
    # A coarse supervisor (2 ms ticks) overshoots every period; the debt makes up for it.
    assert simulate(vcpus, threads, seconds=20, tick_s=0.002) == pytest.approx(vcpus, rel=0.02)


@settings(max_examples=50, deadline=None)
@given(
    vcpus=st.floats(0.07, 3.0),
    threads=st.integers(1, 6),
    tick_s=st.floats(0.0005, 0.02),
)
def test_rate_never_exceeds_the_share_by_more_than_one_period(vcpus, threads, tick_s):
    seconds = 10.0
    rate = simulate(vcpus, threads, seconds, tick_s)
    # Over any run: the first period's quota plus one tick of overshoot at most.
    assert rate <= vcpus + (vcpus * 0.05 + threads * tick_s) / seconds + 1e-9
    if vcpus < threads:
        assert rate >= vcpus * 0.9


def test_overspending_becomes_debt_and_stops_the_next_period():
    budget = CpuBudget(0.5, now=0.0, cpu_s=0.0, period_s=0.1)  # 50 ms per 100 ms
    assert budget.update(0.02, 0.02).run
    decision = budget.update(0.06, 0.12)  # 4 threads: 120 ms used, 70 ms over
    assert not decision.run and decision.next_check == pytest.approx(0.1)
    decision = budget.update(0.1, 0.12)  # the next period: 50 ms quota, 70 ms debt
    assert not decision.run
    assert budget.debt_s == pytest.approx(0.07)
    assert budget.update(0.2, 0.12).run  # 20 ms debt left: 30 ms may be used
    assert budget.allowance_s == pytest.approx(0.03)


def test_unused_quota_is_not_banked():
    budget = CpuBudget(0.25, now=0.0, cpu_s=0.0, period_s=0.05)
    assert budget.update(1.0, 0.0).run  # idle for 20 periods
    assert budget.allowance_s == pytest.approx(0.0125)
    assert not budget.update(1.02, 0.02).run  # 20 ms of burst is over one period's 12.5 ms


def test_next_check_is_when_the_quota_could_run_out():
    budget = CpuBudget(0.5, now=0.0, cpu_s=0.0, period_s=0.1)
    d = budget.update(0.0, 0.0, max_rate=2)
    assert d.run and d.next_check == pytest.approx(0.025)  # 50 ms quota at 2 CPUs
    d = budget.update(0.0, 0.0, max_rate=0.1)
    assert d.next_check == pytest.approx(0.1)  # never later than the period's end


def test_bad_arguments():
    with pytest.raises(ValueError, match="vcpus"):
        CpuBudget(0, now=0, cpu_s=0)
    with pytest.raises(ValueError, match="period_s"):
        CpuBudget(1, now=0, cpu_s=0, period_s=0)

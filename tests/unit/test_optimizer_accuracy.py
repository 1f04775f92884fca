"""Predicted against measured: the accuracy figure and the comparable cost."""

from __future__ import annotations

import math

import pytest

from fasdl.optimizer.accuracy import (
    Accuracy,
    Measured,
    accuracy,
    comparable_cost_usd,
    compare,
)
from fasdl.pricing import Prices


@pytest.mark.parametrize("error", [0.0, 0.03, -0.03, 0.5, -0.9, 2.0])
def test_accuracy_is_one_less_the_relative_error(error: float) -> None:
    measured = 37.5
    got = accuracy(measured * (1 + error), measured)
    assert got == pytest.approx(1 - abs(error))


@pytest.mark.parametrize("measured", [0.0, -1.0, math.nan, math.inf])
def test_accuracy_needs_a_positive_measurement(measured: float) -> None:
    assert accuracy(10.0, measured) is None


def test_comparable_cost_bills_the_loop_on_every_function() -> None:
    prices = Prices(
        usd_per_gb_second=2e-5,
        usd_per_invocation=3e-7,
        usd_per_request={"PUT": 5e-6, "GET": 4e-7, "LIST": 5e-6, "DELETE": 0.0},
        arch="x86",
        source="test",
    )
    W, M, loop, invocations, storage = 6, 1536, 42.0, 9, 0.0123
    gb_s = W * (M / 1024) * loop
    expected = gb_s * 2e-5 + invocations * 3e-7 + storage
    got = comparable_cost_usd(
        prices,
        num_workers=W,
        memory_mb=M,
        loop_s=loop,
        invocations=invocations,
        storage_usd=storage,
    )
    assert got == pytest.approx(expected)


def test_compare_pairs_each_prediction_with_each_measurement() -> None:
    # Every measured figure is distinct, so a swapped pair would show.
    measured = Measured(loop_s=100.0, wall_s=125.0, cost_comparable_usd=0.02, cost_billed_usd=0.03)
    got = compare(predicted_time_s=110.0, predicted_cost_usd=0.024, measured=measured)
    assert got.to_dict() == pytest.approx(
        {
            "time_loop": 1 - 10 / 100,
            "time_wall": 1 - 15 / 125,
            "cost_comparable": 1 - 0.004 / 0.02,
            "cost_billed": 1 - 0.006 / 0.03,
        }
    )
    assert list(got.to_dict()) == ["time_loop", "time_wall", "cost_comparable", "cost_billed"]
    assert isinstance(got, Accuracy)


def test_compare_leaves_out_what_was_not_measured() -> None:
    measured = Measured(loop_s=0.0, wall_s=3.0, cost_comparable_usd=0.0, cost_billed_usd=1.0)
    got = compare(predicted_time_s=3.0, predicted_cost_usd=1.0, measured=measured)
    assert got.to_dict() == {
        "time_loop": None,
        "time_wall": 1.0,
        "cost_comparable": None,
        "cost_billed": 1.0,
    }


def _measurement(**over: object):
    from fasdl.optimizer.accuracy import JobMeasurement

    base = dict(
        time_s=110.0, cost_usd=0.02, loop_s=80.0, straggler_s=4.0, checkpoint_s=2.0,
        evaluation_s=3.0, rounds=3, functions_usd=0.018, store_usd=0.002,
        requests={"PUT": 1000, "GET": 2500, "LIST": 13, "DELETE": 400},
    )  # fmt: skip
    return JobMeasurement(**{**base, **over})  # type: ignore[arg-type]


PLAN = {
    "predicted_time_s": 100.0,
    "predicted_cost_usd": 0.021,
    "breakdown": {
        "job_s": {
            "loop": 76.0,
            "straggler": 5.0,
            "startup": 20.0,
            "checkpoint": 1.0,
            "evaluation": 3.0,
        },
        "invocations_per_worker": 3,
        "requests": {"PUT": 950, "GET": 2600, "LIST": 13, "DELETE": 400},
        "cost_usd": {"functions": 0.0175, "invocations": 0.0005, "store": 0.003, "total": 0.021},
    },
}


def test_a_plan_is_checked_term_by_term() -> None:
    from fasdl.optimizer.accuracy import check_prediction

    d = check_prediction(PLAN, _measurement()).to_dict()
    assert d["accuracy_time"] == pytest.approx(1 - 10 / 110)
    assert d["accuracy_cost"] == pytest.approx(1 - 0.001 / 0.02)
    t = d["terms"]
    # start-up is what the other terms leave of the measured time
    assert t["startup"]["measured"] == pytest.approx(110 - 80 - 2 - 3)
    assert t["loop"] == {"predicted": 76.0, "measured": 80.0, "accuracy": pytest.approx(0.95)}
    assert t["functions_usd"]["predicted"] == pytest.approx(0.018)  # GB-seconds and invocations
    assert t["functions_usd"]["accuracy"] == pytest.approx(1.0)
    assert t["rounds"]["accuracy"] == 1.0 and t["GET"]["measured"] == 2500
    assert list(d) == [
        "time_s", "cost_usd", "measured_time_s", "measured_cost_usd", "accuracy_time",
        "accuracy_cost", "terms",
    ]  # fmt: skip


def test_an_old_plan_is_checked_on_its_totals() -> None:
    """A plan written before the whole job's terms compares what it has."""
    from fasdl.optimizer.accuracy import check_prediction

    old = {"predicted_time_s": 80.0, "predicted_cost_usd": 0.01, "breakdown": {"iteration_s": 1}}
    d = check_prediction(old, _measurement()).to_dict()
    assert d["terms"] == {} and d["accuracy_time"] == pytest.approx(1 - 30 / 110)

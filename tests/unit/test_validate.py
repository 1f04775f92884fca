"""The shared validators: one wording for every layer, InvalidInput naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fasdl.errors import InvalidInput
from fasdl.validate import finite_number, positive_number, whole_number


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3)])
def test_whole_number_accepts_ints_and_numpy_ints(value) -> None:
    n = whole_number(value, "workers", minimum=1)
    assert n == 3 and type(n) is int


@pytest.mark.parametrize("value", [True, False, 3.0, 2.5, "3", None, [3], math.nan])
def test_whole_number_rejects_what_is_not_an_int(value) -> None:
    with pytest.raises(InvalidInput, match="is not a whole number") as e:
        whole_number(value, "workers")
    assert e.value.field == "workers"


def test_whole_floats_accepts_a_whole_float_only() -> None:
    assert whole_number(1024.0, "memory_mb", whole_floats=True) == 1024
    for bad in (1024.5, math.inf, math.nan, True):
        with pytest.raises(InvalidInput, match="memory_mb"):
            whole_number(bad, "memory_mb", whole_floats=True)


def test_whole_number_bounds_and_fix() -> None:
    assert whole_number(1, "k", minimum=1, maximum=1) == 1
    with pytest.raises(InvalidInput) as e:
        whole_number(0, "k", minimum=1, fix="use at least one")
    assert e.value.problem == "0 is below 1" and e.value.fix == "use at least one"
    assert str(e.value) == "k: 0 is below 1 (use at least one)"
    with pytest.raises(InvalidInput, match="is above 5"):
        whole_number(6, "k", maximum=5)
    with pytest.raises(InvalidInput, match="100 MB is outside 128–10,240 MB"):
        whole_number(100, "memory_mb", minimum=128, maximum=10_240, unit="MB")
    with pytest.raises(InvalidInput, match=r"'x' is not a whole number of MB ≥ 1"):
        whole_number("x", "m", minimum=1, unit="MB")


@given(st.integers(-1000, 1000), st.integers(-10, 10))
def test_whole_number_is_the_value_when_at_least_minimum(n: int, minimum: int) -> None:
    if n >= minimum:
        assert whole_number(n, "n", minimum=minimum) == n
    else:
        with pytest.raises(InvalidInput):
            whole_number(n, "n", minimum=minimum)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_finite_number_rejects_nan_and_infinities(value) -> None:
    with pytest.raises(InvalidInput, match=r"lr: .* is not a finite number"):
        finite_number(value, "lr")


@pytest.mark.parametrize("value", [True, "1.0", None, [1.0]])
def test_finite_number_rejects_what_is_not_a_number(value) -> None:
    with pytest.raises(InvalidInput, match=r"lr: .* is not a number"):
        finite_number(value, "lr")


def test_finite_number_bounds() -> None:
    assert finite_number(np.float32(0.5), "x") == 0.5
    assert finite_number(3, "timeout_s", minimum=1, maximum=900) == 3.0
    with pytest.raises(InvalidInput, match="901 s is outside 1–900 s"):
        finite_number(901, "timeout_s", minimum=1, maximum=900, unit="s")
    with pytest.raises(InvalidInput, match="20000 MB is outside 128–10,240 MB"):
        finite_number(20000, "memory_mb", minimum=128, maximum=10_240, unit="MB")
    with pytest.raises(InvalidInput, match="-1 is below 0"):
        finite_number(-1, "x", minimum=0)


@pytest.mark.parametrize("value", [0, -0.0, -1e-9, math.nan, math.inf, False])
def test_positive_number_rejects(value) -> None:
    with pytest.raises(InvalidInput, match="budget"):
        positive_number(value, "budget")


def test_positive_number_accepts() -> None:
    assert positive_number(1e-12, "budget") == 1e-12


def test_json_object_required_and_known_keys() -> None:
    from fasdl.validate import json_object, known_keys, required

    d = json_object({"a": 1}, "event")
    assert required(d, "a", "event") == 1
    with pytest.raises(InvalidInput) as e:
        required(d, "b", "event")
    assert e.value.field == "event.b" and e.value.problem == "missing"
    with pytest.raises(InvalidInput, match=r"event: unknown key\(s\) c \(known: a, b\)"):
        known_keys({"a": 1, "c": 2}, ("a", "b"), "event")
    for bad in ([1], "x", {1: 2}):
        with pytest.raises(InvalidInput, match="not a JSON object"):
            json_object(bad, "event")

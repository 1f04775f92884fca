"""The optimizer prices the wire format: bytes per value scale every transfer."""

from __future__ import annotations

import numpy as np
import pytest

from fasdl.errors import InvalidInput
from fasdl.optimizer.grid import predict
from fasdl.optimizer.model import Scenario
from fasdl.optimizer.plan import PLAN_JSON_KEYS, optimize
from fasdl.perf.coefficients import Coefficients
from fasdl.perf.transfer import WIRE_BYTES_PER_VALUE, WIRES, wire_size_mb
from fasdl.pricing import load_prices
from fasdl.training.wire import encode, wire_nbytes

COEFFS = Coefficients.from_dict(
    {"a": 500.0, "b": 10.0, "m": 100.0, "k1": 1.0, "k2": -0.1, "model_size_mb": 40.0}
)


class LinearTransfer:
    """Transfer time proportional to size (no latency): the wire's factor shows unblurred."""

    def put_s(self, size_mb: float, memory_mb: float) -> float:
        return size_mb / 50

    def get_s(self, size_mb: float, memory_mb: float) -> float:
        return size_mb / 80

    def to_dict(self):
        return {"kind": "test"}


def scenario(wire: str = "fp32") -> Scenario:
    return Scenario(coeffs=COEFFS, prices=load_prices("aws"), samples=50_000, epochs=10, wire=wire)


def test_bytes_per_value_are_what_the_codec_writes() -> None:
    n = 1_000_000
    for wire in WIRES:
        blob, _ = encode(np.zeros(n, np.float32), wire)
        assert len(blob) == wire_nbytes(n, wire)
        assert len(blob) / n == pytest.approx(WIRE_BYTES_PER_VALUE[wire], rel=1e-3)


@pytest.mark.parametrize("wire", WIRES)
def test_transfers_scale_with_the_wire(wire: str) -> None:
    s = scenario(wire)
    assert s.model_size_mb == 40.0  # the float32 vector: unchanged
    assert s.wire_size_mb == wire_size_mb(40.0, wire) == 40.0 * WIRE_BYTES_PER_VALUE[wire] / 4
    ours = predict(s, LinearTransfer(), 8, 2, 1769)
    fp32 = predict(scenario(), LinearTransfer(), 8, 2, 1769)
    ratio = WIRE_BYTES_PER_VALUE[wire] / 4
    for term in ("upload", "aggregate", "download"):
        assert ours.per_iteration_s[term] == pytest.approx(fp32.per_iteration_s[term] * ratio)
    assert ours.per_iteration_s["train"] == fp32.per_iteration_s["train"]


def test_a_cheaper_wire_can_change_the_plan_and_the_plan_carries_it() -> None:
    plans = {w: optimize(scenario(w), LinearTransfer(), deadline_s=4000.0) for w in WIRES}
    assert plans["fp32"].to_dict()["wire"] == "fp32" and plans["int8"].to_dict()["wire"] == "int8"
    assert "wire" in PLAN_JSON_KEYS
    assert plans["int8"].prediction.total_cost_usd < plans["fp32"].prediction.total_cost_usd
    assert len({(p.num_workers, p.num_aggregators, p.memory_mb) for p in plans.values()}) > 1


def test_an_unknown_wire_is_refused() -> None:
    with pytest.raises(InvalidInput, match="wire"):
        scenario("fp8")

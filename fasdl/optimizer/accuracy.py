"""Predicted against measured: how close the model's time and cost came to a real run's.

The accuracy of a prediction is 1 - |predicted - measured| / measured, the FasDL paper's figure
(it reports above 94 % on AWS Lambda). The model predicts the training iterations only, so a run
is compared twice: against its training loop (what the model predicts) and its wall time (start-up,
barrier and evaluation included); and against a comparable cost (the functions billed for the
training loop only) and the billed one. Only numbers come in: the measurement is the caller's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fasdl.optimizer.model import MB_PER_GB
from fasdl.pricing import Prices


def accuracy(predicted: float, measured: float) -> float | None:
    """1 - |predicted - measured| / measured; None when nothing positive was measured."""
    if not measured > 0 or math.isinf(measured):
        return None
    return 1 - abs(predicted - measured) / measured


def comparable_cost_usd(
    prices: Prices,
    *,
    num_workers: int,
    memory_mb: int,
    loop_s: float,
    invocations: int,
    storage_usd: float,
) -> float:
    """What a run costs when its W functions of M MB are billed for the training loop only
    (as the model bills them), plus its invocations and every store request it made."""
    gb_s = num_workers * memory_mb / MB_PER_GB * loop_s
    return prices.function_cost(gb_s, invocations) + storage_usd


@dataclass(frozen=True, kw_only=True)
class Measured:
    """What a run of a plan measured."""

    loop_s: float  # the training loop: the iterations the model predicts
    wall_s: float  # the job's wall time: start-up, barrier and evaluation too
    cost_comparable_usd: float  # see comparable_cost_usd
    cost_billed_usd: float  # what the job was charged: whole billed durations


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """The accuracy of the predicted time and cost against each measured figure (None: n/a)."""

    time_loop: float | None
    time_wall: float | None
    cost_comparable: float | None
    cost_billed: float | None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def compare(*, predicted_time_s: float, predicted_cost_usd: float, measured: Measured) -> Accuracy:
    """The predicted time and cost against every measured time and cost."""
    return Accuracy(
        time_loop=accuracy(predicted_time_s, measured.loop_s),
        time_wall=accuracy(predicted_time_s, measured.wall_s),
        cost_comparable=accuracy(predicted_cost_usd, measured.cost_comparable_usd),
        cost_billed=accuracy(predicted_cost_usd, measured.cost_billed_usd),
    )

"""Predicted against measured: how close the model's time and cost came to a real run's.

``check_prediction`` compares a plan's whole-job prediction with a run of it, term by term
(what ``fasdl train --plan`` prints and stores); ``compare`` below is the older loop-only view.

The accuracy of a prediction is 1 - |predicted - measured| / measured, the FasDL paper's figure
(it reports above 94 % on AWS Lambda). The model predicts the training iterations only, so a run
is compared twice: against its training loop (what the model predicts) and its wall time (start-up,
barrier and evaluation included); and against a comparable cost (the functions billed for the
training loop only) and the billed one. Only numbers come in: the measurement is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

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


# --- a planned job: the plan's whole-job prediction against the run --------------------------


@dataclass(frozen=True, kw_only=True)
class JobMeasurement:
    """What a run of a plan measured, term by term (the caller reads it from the job's summary
    and its workers' logs)."""

    time_s: float  # the job: the coordinator's wall time and the final evaluation
    cost_usd: float  # billed: every function's whole billed duration, invocations, requests
    loop_s: float  # aggregator 0's training loop (its iterations' seconds, all rounds)
    straggler_s: float  # of which waiting for the slowest worker's training, all iterations
    checkpoint_s: float  # worker 0 writing its checkpoints
    evaluation_s: float  # the final evaluation
    rounds: int
    functions_usd: float  # billed GB-seconds and invocations
    store_usd: float
    requests: Mapping[str, int]


@dataclass(frozen=True, kw_only=True)
class Term:
    predicted: float
    measured: float

    @property
    def accuracy(self) -> float | None:
        return accuracy(self.predicted, self.measured)

    def to_dict(self) -> dict[str, float | None]:
        return {"predicted": self.predicted, "measured": self.measured, "accuracy": self.accuracy}


@dataclass(frozen=True, kw_only=True)
class PredictionCheck:
    """A plan's predicted time and cost next to a run's, with each term's accuracy."""

    time_s: float
    cost_usd: float
    measured_time_s: float
    measured_cost_usd: float
    terms: Mapping[str, Term]

    @property
    def accuracy_time(self) -> float | None:
        return accuracy(self.time_s, self.measured_time_s)

    @property
    def accuracy_cost(self) -> float | None:
        return accuracy(self.cost_usd, self.measured_cost_usd)

    def to_dict(self) -> dict[str, Any]:
        """``fasdl train --plan --json``'s ``prediction`` and ``output/<job>/prediction.json``."""
        return {
            "time_s": self.time_s,
            "cost_usd": self.cost_usd,
            "measured_time_s": self.measured_time_s,
            "measured_cost_usd": self.measured_cost_usd,
            "accuracy_time": self.accuracy_time,
            "accuracy_cost": self.accuracy_cost,
            "terms": {name: t.to_dict() for name, t in self.terms.items()},
        }

    @classmethod
    def from_dict(cls, d: Any) -> PredictionCheck:
        """Read ``to_dict``'s output back (the accuracies are recomputed; unknown keys, from a
        newer fasdl, are ignored). ``ValueError`` says which field is missing or not a number."""
        if not isinstance(d, dict):
            raise ValueError("a prediction is a JSON object")

        def number(where: Mapping[str, Any], name: str, what: str) -> float:
            v = where.get(name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{what}{name} is {v!r}, not a number")
            return float(v)

        raw = d.get("terms", {})
        if not isinstance(raw, dict):
            raise ValueError(f"terms is {raw!r}, not an object")
        terms: dict[str, Term] = {}
        for name, t in raw.items():
            if not isinstance(t, dict):
                raise ValueError(f"term {name!r} is {t!r}, not an object")
            terms[str(name)] = Term(
                predicted=number(t, "predicted", f"term {name!r}: "),
                measured=number(t, "measured", f"term {name!r}: "),
            )
        return cls(
            time_s=number(d, "time_s", ""),
            cost_usd=number(d, "cost_usd", ""),
            measured_time_s=number(d, "measured_time_s", ""),
            measured_cost_usd=number(d, "measured_cost_usd", ""),
            terms=terms,
        )


def check_prediction(plan: Mapping[str, Any], measured: JobMeasurement) -> PredictionCheck:
    """The plan's prediction (``fasdl optimize --json``: ``predicted_time_s``,
    ``predicted_cost_usd``, ``breakdown``) against ``measured``.

    Time terms: ``loop`` (the iterations with the wait for the slowest worker), ``straggler``
    (that wait alone), ``checkpoint``, ``evaluation``, and ``startup``, measured as what the
    others leave of the job's time (starting the functions each round, the barrier, the
    coordinator's partitions and bookkeeping). Cost terms: ``functions`` (billed GB-seconds and
    invocations) and ``store``; then ``rounds`` and the ``PUT`` and ``GET`` requests. A plan
    written before the whole-job terms existed has no ``job_s``: only the totals are compared.
    """
    b = plan.get("breakdown") or {}
    job = b.get("job_s") or {}
    terms: dict[str, Term] = {}
    rest = measured.time_s - measured.loop_s - measured.checkpoint_s - measured.evaluation_s
    for name, value in (
        ("loop", measured.loop_s),
        ("straggler", measured.straggler_s),
        ("startup", rest),
        ("checkpoint", measured.checkpoint_s),
        ("evaluation", measured.evaluation_s),
    ):
        if name in job:
            terms[name] = Term(predicted=float(job[name]), measured=value)
    cost = b.get("cost_usd") or {}
    if "functions" in cost:
        terms["functions_usd"] = Term(
            predicted=float(cost["functions"]) + float(cost.get("invocations", 0.0)),
            measured=measured.functions_usd,
        )
    if "store" in cost:
        terms["store_usd"] = Term(predicted=float(cost["store"]), measured=measured.store_usd)
    if "invocations_per_worker" in b:
        terms["rounds"] = Term(
            predicted=float(b["invocations_per_worker"]), measured=float(measured.rounds)
        )
    for kind in ("PUT", "GET"):
        if kind in (b.get("requests") or {}):
            terms[kind] = Term(
                predicted=float(b["requests"][kind]),
                measured=float(measured.requests.get(kind, 0)),
            )
    return PredictionCheck(
        time_s=float(plan["predicted_time_s"]),
        cost_usd=float(plan["predicted_cost_usd"]),
        measured_time_s=measured.time_s,
        measured_cost_usd=measured.cost_usd,
        terms=terms,
    )

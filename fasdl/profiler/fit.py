"""Fit the seed's performance model to a profile. Pure: numbers in, frozen results out.

    T_train = a·(B + b)/(M + m)     seconds per iteration at batch size B and memory M MB
    T_trans = k1·M^k2               seconds to flatten the model into the vector K-Reduce sends

Times span orders of magnitude (a large batch on a small function against a small batch on a
large one), so the residuals are relative, (predicted − measured)/measured, and a robust loss
(soft L1, quadratic below ``F_SCALE`` = 10 %) keeps one disturbed run from pulling the curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from fasdl.errors import InvalidInput
from fasdl.profiler.records import ProfileSample

TRAIN_MIN_POINTS = 4  # 3 coefficients, plus one point so that the fit can be checked at all
TRANS_MIN_POINTS = 3  # 2 coefficients, plus one
K2_BOUNDS = (-2.0, 1.0)  # CPU grows at most linearly with memory, so faster than 1/M² is noise
OFFSET_MAX_FACTOR = 100.0  # b ≤ 100·max(B), m ≤ 100·max(M): beyond, the data cannot tell
LOSS = "soft_l1"
F_SCALE = 0.1

_Array = np.ndarray[Any, np.dtype[np.float64]]


def train_time_s(batch_size: Any, memory_mb: Any, a: float, b: float, m: float) -> Any:
    return a * (np.asarray(batch_size, float) + b) / (np.asarray(memory_mb, float) + m)


def trans_time_s(memory_mb: Any, k1: float, k2: float) -> Any:
    return k1 * np.asarray(memory_mb, float) ** k2


@dataclass(frozen=True)
class FitStats:
    """How well a model fits: on the measured points, and predicting each point left out in turn.

    ``loo_points`` counts the points that could be left out (the rest must still be enough to
    fit); ``loo_mape_pct`` is NaN if none could. ``at_bounds`` names coefficients that ended on a
    bound, a sign that the profile does not determine them.
    """

    points: int
    r2: float
    mape_pct: float
    loo_mape_pct: float
    loo_points: int
    at_bounds: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "r2": _json_float(self.r2),
            "mape_pct": _json_float(self.mape_pct),
            "loo_mape_pct": _json_float(self.loo_mape_pct),
            "loo_points": self.loo_points,
            "at_bounds": list(self.at_bounds),
        }


@dataclass(frozen=True)
class TrainFit:
    a: float
    b: float
    m: float
    stats: FitStats

    def predict(self, batch_size: Any, memory_mb: Any) -> Any:
        return train_time_s(batch_size, memory_mb, self.a, self.b, self.m)


@dataclass(frozen=True)
class TransFit:
    k1: float
    k2: float
    stats: FitStats

    def predict(self, memory_mb: Any) -> Any:
        return trans_time_s(memory_mb, self.k1, self.k2)


@dataclass(frozen=True)
class ProfileFit:
    train: TrainFit
    trans: TransFit
    runs_used: int
    runs_skipped: int  # out of memory or failed


def fit_profile(samples: Sequence[ProfileSample]) -> ProfileFit:
    """Fit both models to the runs whose status is "ok"."""
    ok = [s for s in samples if s.ok]
    if not ok:
        raise InvalidInput(
            "profile",
            f"none of its {len(samples)} runs succeeded (all ran out of memory or failed)",
            "profile larger memory sizes or smaller batch sizes",
        )
    memory = [s.memory_mb for s in ok]
    train = fit_train([s.batch_size for s in ok], memory, [s.train_s for s in ok])
    trans = fit_trans(memory, [s.trans_s for s in ok])
    return ProfileFit(train, trans, runs_used=len(ok), runs_skipped=len(samples) - len(ok))


# --- T_train ------------------------------------------------------------------------------------


def fit_train(
    batch_size: Sequence[float], memory_mb: Sequence[float], train_s: Sequence[Any]
) -> TrainFit:
    B, M, T = (
        _positive_array(x, name)
        for x, name in ((batch_size, "batch_size"), (memory_mb, "memory_mb"), (train_s, "train_s"))
    )
    _same_length(B, M, T)
    _require_train(B, M)
    (a, b, m), at_bounds = _train_coeffs(B, M, T)
    pred = train_time_s(B, M, a, b, m)

    def loo(keep: _Array) -> Callable[[int], float] | None:
        if not _train_enough(B[keep], M[keep], len(B) - 1):
            return None
        # Leaving one point out moves the optimum a little: start from the full fit.
        (la, lb, lm), _ = _train_coeffs(B[keep], M[keep], T[keep], start=(a, b, m))
        return lambda i: float(train_time_s(B[i], M[i], la, lb, lm))

    return TrainFit(float(a), float(b), float(m), _stats(T, pred, loo, at_bounds))


def _train_enough(B: _Array, M: _Array, min_points: int) -> bool:
    return len(B) >= min_points and len(np.unique(M)) >= 2 and len(np.unique(B)) >= 2


def _require_train(B: _Array, M: _Array) -> None:
    if not _train_enough(B, M, TRAIN_MIN_POINTS):
        raise InvalidInput(
            "profile",
            f"too few runs to fit T_train = a·(B + b)/(M + m): its 3 coefficients need at least "
            f"{TRAIN_MIN_POINTS} successful runs over at least 2 memory sizes and 2 batch sizes; "
            f"there are {len(B)} runs, {len(np.unique(M))} memory sizes, {len(np.unique(B))} batch sizes",
            "profile more configurations, e.g. --memory 512,1024,2048 --batch 16,32,64",
        )


def _train_bounds(B: _Array, M: _Array) -> tuple[_Array, _Array]:
    # Variables: log a, b, m. b > −min(B) and m > −min(M) keep every time positive.
    lo = np.array([-np.inf, -(1 - 1e-6) * B.min(), -(1 - 1e-6) * M.min()])
    hi = np.array([np.inf, OFFSET_MAX_FACTOR * B.max(), OFFSET_MAX_FACTOR * M.max()])
    return lo, hi


def _train_coeffs(
    B: _Array, M: _Array, T: _Array, start: tuple[float, float, float] | None = None
) -> tuple[tuple[float, float, float], tuple[str, ...]]:
    """Several starts from the grid; or only ``start`` (a, b, m), a nearby solution, if given."""
    lo, hi = _train_bounds(B, M)
    scale = np.array([1.0, B.max(), M.max()])  # b and m in units of the largest B and M

    def residuals(x: _Array) -> _Array:
        la, b, m = x * scale
        r: _Array = train_time_s(B, M, np.exp(la), b, m) / T - 1.0
        return r

    best = None
    if start is None:
        starts = _train_starts(B, M, T, lo, hi)
    else:
        starts = [np.clip(np.array([np.log(start[0]), start[1], start[2]]), lo, hi)]
    for x0 in starts:
        result = least_squares(
            residuals,
            x0 / scale,
            bounds=(lo / scale, hi / scale),
            loss=LOSS,
            f_scale=F_SCALE,
            method="trf",
        )
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    la, b, m = best.x * scale
    at = tuple(
        name
        for name, v, low, high in (("b", b, lo[1], hi[1]), ("m", m, lo[2], hi[2]))
        # Each bound is some multiple of a B or an M: "on it" means within 0.1 % of that scale.
        if v - low <= 1e-3 * abs(low) or high - v <= 1e-3 * high
    )
    return (float(np.exp(la)), float(b), float(m)), at


def _train_starts(
    B: _Array, M: _Array, T: _Array, lo: _Array, hi: _Array, count: int = 3
) -> list[_Array]:
    """Starting points from a grid over m: for fixed m the model is linear in (a, a·b).

    T·(M + m) = a·B + a·b, so each m gives a weighted linear least-squares fit of the relative
    residuals; the best few m on a log grid start the non-linear fit.
    """
    offsets = np.geomspace(1e-3 * M.min(), hi[2] + M.min(), 48)
    candidates = []
    for m in np.clip(offsets - M.min(), lo[2] * (1 - 1e-9), hi[2]):
        z = T * (M + m)
        design = np.column_stack([B / z, 1.0 / z])
        (a, ab), *_ = np.linalg.lstsq(design, np.ones_like(T), rcond=None)
        if a <= 0:  # no positive slope at this m: start from a crude a with b = 0 instead
            a, ab = float(np.median(z / B)), 0.0
        b = float(np.clip(ab / a, lo[1] * (1 - 1e-9), hi[1]))
        cost = float(np.sum((train_time_s(B, M, a, b, m) / T - 1.0) ** 2))
        candidates.append((cost, np.array([np.log(a), b, m])))
    candidates.sort(key=lambda c: c[0])
    return [x for _, x in candidates[:count]]


# --- T_trans ------------------------------------------------------------------------------------


def fit_trans(memory_mb: Sequence[float], trans_s: Sequence[Any]) -> TransFit:
    M, T = _positive_array(memory_mb, "memory_mb"), _positive_array(trans_s, "trans_s")
    _same_length(M, T)
    if not _trans_enough(M, TRANS_MIN_POINTS):
        raise InvalidInput(
            "profile",
            f"too few runs to fit T_trans = k1·M^k2: its 2 coefficients need at least {TRANS_MIN_POINTS} "
            f"successful runs over at least 2 memory sizes; there are {len(M)} runs, "
            f"{len(np.unique(M))} memory sizes",
            "profile more memory sizes, e.g. --memory 512,1024,2048",
        )
    (k1, k2), at_bounds = _trans_coeffs(M, T)
    pred = trans_time_s(M, k1, k2)

    def loo(keep: _Array) -> Callable[[int], float] | None:
        if not _trans_enough(M[keep], 2):
            return None
        (lk1, lk2), _ = _trans_coeffs(M[keep], T[keep])
        return lambda i: float(trans_time_s(M[i], lk1, lk2))

    return TransFit(float(k1), float(k2), _stats(T, pred, loo, at_bounds))


def _trans_enough(M: _Array, min_points: int) -> bool:
    return len(M) >= min_points and len(np.unique(M)) >= 2


def _trans_coeffs(M: _Array, T: _Array) -> tuple[tuple[float, float], tuple[str, ...]]:
    # T = c·(M/M_ref)^k2 with M_ref the geometric mean, so that c and k2 are nearly uncorrelated.
    log_ref = float(np.mean(np.log(M)))
    x = np.log(M) - log_ref
    k2_0, log_c0 = np.polyfit(x, np.log(T), 1)
    k2_0 = float(np.clip(k2_0, K2_BOUNDS[0] + 1e-6, K2_BOUNDS[1] - 1e-6))

    def residuals(p: _Array) -> _Array:
        r: _Array = np.exp(p[0] + p[1] * x) / T - 1.0
        return r

    result = least_squares(
        residuals,
        np.array([log_c0, k2_0]),
        bounds=([-np.inf, K2_BOUNDS[0]], [np.inf, K2_BOUNDS[1]]),
        loss=LOSS,
        f_scale=F_SCALE,
    )
    log_c, k2 = result.x
    at = ("k2",) if min(k2 - K2_BOUNDS[0], K2_BOUNDS[1] - k2) <= 1e-3 else ()
    return (float(np.exp(log_c - k2 * log_ref)), float(k2)), at


# --- shared -------------------------------------------------------------------------------------


def _stats(
    T: _Array,
    pred: _Array,
    loo: Callable[[_Array], Callable[[int], float] | None],
    at_bounds: tuple[str, ...],
) -> FitStats:
    ss_tot = float(np.sum((T - T.mean()) ** 2))
    r2 = 1.0 - float(np.sum((T - pred) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    errors = []
    for i in range(len(T)):
        keep = np.arange(len(T)) != i
        predict = loo(keep)
        if predict is not None:
            errors.append(abs(predict(i) - T[i]) / T[i])
    return FitStats(
        points=len(T),
        r2=r2,
        mape_pct=100.0 * float(np.mean(np.abs(pred - T) / T)),
        loo_mape_pct=100.0 * float(np.mean(errors)) if errors else float("nan"),
        loo_points=len(errors),
        at_bounds=at_bounds,
    )


def _positive_array(values: Sequence[Any], name: str) -> _Array:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise InvalidInput(name, f"not a sequence of numbers: {e}") from e
    if arr.ndim != 1:
        raise InvalidInput(name, "must be a flat sequence of numbers")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        raise InvalidInput(
            name, f"value {values[int(bad[0])]!r} (point {int(bad[0]) + 1}) is not a number > 0"
        )
    return arr


def _same_length(*arrays: _Array) -> None:
    if len({len(a) for a in arrays}) != 1:
        raise InvalidInput("profile", f"columns of different lengths {[len(a) for a in arrays]}")


def _json_float(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


# --- the whole job's terms ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFit:
    """Start-up ``startup_fixed_s + startup_cpu_s / vCPUs(M)`` and the spread of single training
    iterations ``train_cv + train_cv_cpu / vCPUs(M)`` (non-negative least squares over the runs),
    the CPU-seconds to load one sample of a worker's partition (mean of the runs' seconds per
    sample times min(1, vCPUs(M))), and the medians of the evaluation's seconds per sample and
    fixed seconds and of the upload of the training set; None where the profile did not measure them (profiles written before
    they existed)."""

    startup_fixed_s: float | None
    startup_cpu_s: float | None
    train_cv: float | None
    train_cv_cpu: float | None
    eval_s_per_sample: float | None
    startup_points: int
    eval_fixed_s: float | None = None
    data_upload_s: float | None = None
    cpu_period_s: float | None = None
    load_cpu_s_per_sample: float | None = None

    def coefficients(self) -> dict[str, float | None]:
        return {
            "startup_fixed_s": self.startup_fixed_s,
            "startup_cpu_s": self.startup_cpu_s,
            "load_cpu_s_per_sample": self.load_cpu_s_per_sample,
            "train_cv": self.train_cv,
            "train_cv_cpu": self.train_cv_cpu,
            "eval_s_per_sample": self.eval_s_per_sample,
            "eval_fixed_s": self.eval_fixed_s,
            "data_upload_s": self.data_upload_s,
            "cpu_period_s": self.cpu_period_s,
        }


def fixed_plus_per_vcpu(memory_mb: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(f, c) ≥ 0 minimising Σ (f + c/vCPUs(M) − y)²: what does not scale with the CPU share and
    what does. With one memory only, or a term that would go negative, one term takes it all."""
    from fasdl.platform.limits import vcpus_for_memory

    inv = np.array([1 / vcpus_for_memory(float(m)) for m in memory_mb])
    v = np.array([float(t) for t in y])
    if len(np.unique(inv)) < 2:
        return float(np.median(v)), 0.0
    (f, c), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(inv), inv]), v, rcond=None)
    if f < 0:
        return 0.0, max(0.0, float(np.dot(inv, v) / np.dot(inv, inv)))
    if c < 0:
        return max(0.0, float(np.mean(v))), 0.0
    return float(f), float(c)


def fit_job(samples: Sequence[ProfileSample]) -> JobFit:
    """Fit the job's terms to the runs whose status is "ok".

    Where the platform said in which period it hands out a CPU share (``cpu_period_s``), the
    waits that share causes are a term of their own (``optimizer.job.quota_wait_s``), so the
    spread of single iterations is fitted to the runs with a whole vCPU or more when there are
    any: below one, the duty cycle's stops are in the spread and would be counted twice."""
    from fasdl.platform.limits import vcpus_for_memory

    ok = [s for s in samples if s.ok]

    def median(name: str) -> float | None:
        values = [getattr(s, name) for s in ok if getattr(s, name) is not None]
        return float(np.median(values)) if values else None

    period = median("cpu_period_s")
    starts = [(s.memory_mb, s.startup_s) for s in ok if s.startup_s is not None]
    cvs = [(s.memory_mb, s.train_cv) for s in ok if s.train_cv is not None]
    whole = [(m, cv) for m, cv in cvs if vcpus_for_memory(float(m)) >= 1]
    if period is not None and whole:
        cvs = whole
    evals = [s.eval_s_per_sample for s in ok if s.eval_s_per_sample is not None]
    # The data's load is one thread's work: it runs at min(1, vCPUs) of a core. The mean, not the
    # median: the runs that paid for fresh pages (a new process's first touch of its arrays) are
    # the ones a worker is like.
    loads = [
        s.load_s_per_sample * min(1.0, vcpus_for_memory(float(s.memory_mb)))
        for s in ok
        if s.load_s_per_sample is not None
    ]

    fixed, cpu = fixed_plus_per_vcpu(*zip(*starts, strict=True)) if starts else (None, None)
    cv, cv_cpu = fixed_plus_per_vcpu(*zip(*cvs, strict=True)) if cvs else (None, None)
    return JobFit(
        startup_fixed_s=fixed,
        startup_cpu_s=cpu,
        train_cv=cv,
        train_cv_cpu=cv_cpu,
        eval_s_per_sample=float(np.median(evals)) if evals else None,
        startup_points=len(starts),
        eval_fixed_s=median("eval_fixed_s"),
        data_upload_s=median("data_upload_s"),
        cpu_period_s=period,
        load_cpu_s_per_sample=float(np.mean(loads)) if loads else None,
    )

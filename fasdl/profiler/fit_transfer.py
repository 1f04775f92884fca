"""Fit a transfer profile: latency plus size over bandwidth per memory size, or the table itself.

For each memory size measured, t = latency + size/bandwidth is fitted to the put times and to
the get times (relative residuals, the robust loss of ``fit.py``). Between memory sizes the
latency and the bandwidth are interpolated linearly; beyond the measured range the nearest row
holds, as in ``TableTransferModel``. Which of the two models to keep is decided on held-out
points: each object size at each memory size is left out in turn and predicted from the rest.
Pure: rows in, frozen models out. The models themselves live in ``fasdl.perf.transfer``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fasdl.errors import InvalidInput
from fasdl.perf.transfer import (
    LATENCY_BANDWIDTH,
    LatencyBandwidthModel,
    TableTransferModel,
    TransferModel,
)
from fasdl.platform.limits import check_memory_mb
from fasdl.profiler.fit import F_SCALE

MIN_SIZES_PER_MEMORY = 3  # 2 to fit latency and bandwidth, 1 more to hold out


@dataclass(frozen=True)
class TransferChoice:
    """Both candidate models, their held-out errors, and the one kept (``model``)."""

    chosen: str  # "latency_bandwidth" | "table"
    fit: LatencyBandwidthModel
    table: TableTransferModel
    fit_heldout_mape_pct: float
    table_heldout_mape_pct: float
    heldout_points: int  # put and get counted separately
    fit_mape_pct: float  # the fit on the points it was fitted to

    @property
    def model(self) -> TransferModel:
        return self.fit if self.chosen == LATENCY_BANDWIDTH else self.table

    def summary(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "fit_heldout_mape_pct": self.fit_heldout_mape_pct,
            "table_heldout_mape_pct": self.table_heldout_mape_pct,
            "heldout_points": self.heldout_points,
            "fit_mape_pct": self.fit_mape_pct,
            "memory_sizes": len(self.fit.memory_mb),
        }


def fit_line(size_mb: Sequence[float], time_s: Sequence[float]) -> tuple[float, float]:
    """(latency_s, mb_per_s) of t = latency + size/bandwidth, latency ≥ 0, by the robust loss."""
    s = np.asarray(size_mb, dtype=float)
    t = np.asarray(time_s, dtype=float)
    if len(np.unique(s)) < 2:
        raise InvalidInput(
            "transfer", "fitting latency and bandwidth needs at least 2 object sizes"
        )
    latency, slope = _fit_lines(s, t, np.ones((1, len(s))))
    if slope[0] <= 0:
        raise InvalidInput(
            "transfer", "the times do not grow with object size; cannot fit a bandwidth"
        )
    return float(latency[0]), float(1.0 / slope[0])


def _fit_lines(
    s: np.ndarray, t: np.ndarray, include: np.ndarray, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """One fit of t = latency + slope·s per row of ``include`` (k × n, 1 = use the point).

    Minimises the soft-L1 loss of the relative residuals by iteratively reweighted least squares:
    for a model linear in its parameters that is a few 2×2 solves instead of an optimiser run,
    and all of a row's leave-one-out fits run at once as the rows of ``include``.
    """
    weights = include.astype(float)
    latency = slope = np.zeros(len(include))
    for _ in range(iterations):
        # Weighted normal equations of Σ w·((latency + slope·s)/t − 1)².
        p = weights / t**2
        sp, sps, spss = p.sum(1), (p * s).sum(1), (p * s * s).sum(1)
        spt, spst = (p * t).sum(1), (p * s * t).sum(1)
        det = sp * spss - sps * sps
        latency = (spss * spt - sps * spst) / det
        slope = (sp * spst - sps * spt) / det
        through_origin = (latency < 0) | (slope <= 0)  # latency can't be negative: refit with 0
        latency = np.where(through_origin, 0.0, latency)
        slope = np.where(through_origin, spst / spss, slope)
        residual = (latency[:, None] + slope[:, None] * s) / t - 1.0
        new_weights = include / np.sqrt(
            1.0 + (residual / F_SCALE) ** 2
        )  # soft_l1: rho'(z), z = (r/f)²
        if np.max(np.abs(new_weights - weights)) < 1e-6:
            break
        weights = new_weights
    return latency, slope


def fit_transfer(rows: Sequence[Mapping[str, float]], source: str = "fit") -> TransferChoice:
    """Fit latency + size/bandwidth per memory size to rows of the reference transfer CSV.

    Rows that repeat a (memory, size) pair are merged into their mean weighted by ``samples``.
    """
    table_rows = _merge(rows)
    by_memory: dict[float, list[dict[str, float]]] = defaultdict(list)
    for r in table_rows:
        by_memory[r["memory_mb"]].append(r)
    thin = sorted(m for m, rs in by_memory.items() if len(rs) < MIN_SIZES_PER_MEMORY)
    if thin:
        raise InvalidInput(
            "transfer",
            f"memory sizes {', '.join(f'{m:g}' for m in thin)} MB have fewer than {MIN_SIZES_PER_MEMORY} "
            f"object sizes ({MIN_SIZES_PER_MEMORY - 1} to fit latency and bandwidth, 1 to check them)",
            "measure at least 3 object sizes, e.g. 1, 8 and 64 MB, at each memory size",
        )
    memories = sorted(by_memory)
    params = [_fit_row(by_memory[m]) for m in memories]
    put_latency, put_bw, get_latency, get_bw = (tuple(p[i] for p in params) for i in range(4))
    fit = LatencyBandwidthModel(
        tuple(memories), put_latency, put_bw, get_latency, get_bw, source=source
    )
    table = TableTransferModel.from_rows(table_rows, source=source)

    fit_errors, table_errors, in_sample = [], [], []
    for m in memories:
        row = by_memory[m]
        sizes = np.array([r["object_mb"] for r in row])
        leave_one_out = 1.0 - np.eye(len(row))
        for key, predict in (("upload_s", fit.put_s), ("download_s", fit.get_s)):
            times = np.array([r[key] for r in row])
            in_sample += [_rel(predict(size, m), t) for size, t in zip(sizes, times, strict=True)]
            latency, slope = _fit_lines(sizes, times, leave_one_out)
            fit_errors += list(np.abs(latency + slope * sizes - times) / times)
        for i, held in enumerate(row):
            # The table's own rule on the row without the held-out point. Its prediction there
            # depends only on the two nearest sizes either side (interpolation, or the last
            # segment's slope beyond the end), so those four rows make the same table, faster.
            t = TableTransferModel.from_rows(row[max(0, i - 2) : i] + row[i + 1 : i + 3])
            size = held["object_mb"]
            table_errors += [
                _rel(t.put_s(size, m), held["upload_s"]),
                _rel(t.get_s(size, m), held["download_s"]),
            ]
    fit_err = 100.0 * float(np.mean(fit_errors))
    table_err = 100.0 * float(np.mean(table_errors))
    return TransferChoice(
        chosen=LATENCY_BANDWIDTH if fit_err <= table_err else "table",
        fit=fit,
        table=table,
        fit_heldout_mape_pct=fit_err,
        table_heldout_mape_pct=table_err,
        heldout_points=len(fit_errors),
        fit_mape_pct=100.0 * float(np.mean(in_sample)),
    )


def _fit_row(row: Sequence[Mapping[str, float]]) -> tuple[float, float, float, float]:
    sizes = [r["object_mb"] for r in row]
    put = fit_line(sizes, [r["upload_s"] for r in row])
    get = fit_line(sizes, [r["download_s"] for r in row])
    return put[0], put[1], get[0], get[1]


def _rel(predicted: float, measured: float) -> float:
    return abs(predicted - measured) / measured


def _merge(rows: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    if not rows:
        raise InvalidInput("transfer", "the transfer profile has no rows")
    groups: dict[tuple[float, float], list[Mapping[str, float]]] = defaultdict(list)
    for r in rows:
        check_memory_mb(r["memory_mb"], "transfer memory_mb")
        values = [float(r[k]) for k in ("object_mb", "upload_s", "download_s")]
        if not all(np.isfinite(v) and v > 0 for v in values):
            raise InvalidInput("transfer", f"row {dict(r)}: sizes and times must be > 0")
        groups[(float(r["memory_mb"]), float(r["object_mb"]))].append(r)
    merged = []
    for (m, s), group in sorted(groups.items()):
        w = np.array([float(r.get("samples", 1) or 1) for r in group])
        merged.append(
            {
                "memory_mb": m,
                "object_mb": s,
                "upload_s": float(np.average([r["upload_s"] for r in group], weights=w)),
                "download_s": float(np.average([r["download_s"] for r in group], weights=w)),
                "samples": float(w.sum()),
            }
        )
    return merged

"""The search space's axes, and the transfer times tabulated on them once per search.

A search asks for the time of a chunk of S/K MB at memory M for every K and M it scans; looking
each one up through the TransferModel protocol costs about 0.1 ms, so the times are tabulated
once, per (K, M), in a ``TransferGrid``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasdl.errors import InvalidInput
from fasdl.optimizer.model import Prediction, Scenario, evaluate, prediction_at
from fasdl.perf.transfer import TableTransferModel, TransferModel
from fasdl.platform.limits import MAX_MEMORY_MB, MIN_MEMORY_MB, check_memory_mb
from fasdl.validate import whole_number

DEFAULT_MEMORY_STEP_MB = 64


def memory_grid(
    min_mb: int = MIN_MEMORY_MB, max_mb: int = MAX_MEMORY_MB, step_mb: int = DEFAULT_MEMORY_STEP_MB
) -> np.ndarray:
    """min, min+step, … up to max, and max itself (so the fastest memory is always a choice)."""
    lo = check_memory_mb(min_mb, "min_memory")
    hi = check_memory_mb(max_mb, "max_memory")
    if lo > hi:
        raise InvalidInput(
            "min_memory", f"{lo} MB is above the maximum memory {hi} MB", "lower --min-memory"
        )
    whole_number(step_mb, "memory_step", minimum=1, unit="MB")
    grid = np.arange(lo, hi + 1, step_mb, dtype=np.int64)
    if grid[-1] != hi:
        grid = np.append(grid, hi)
    return grid


@dataclass(frozen=True)
class TransferGrid:
    """put/get seconds of one chunk of size_mb/K at each memory: arrays [K−1][memory index]."""

    memories: np.ndarray
    put_s: np.ndarray
    get_s: np.ndarray

    @property
    def max_k(self) -> int:
        k: int = self.put_s.shape[0]
        return k


def transfer_grid(
    transfer: TransferModel, size_mb: float, max_k: int, memories: np.ndarray
) -> TransferGrid:
    sizes = size_mb / np.arange(1, max_k + 1, dtype=float)
    mems = np.asarray(memories, dtype=float)
    if isinstance(transfer, TableTransferModel):
        # The same interpolation as TableTransferModel, vectorised (a test checks they agree).
        put = _table_times(transfer, transfer.upload_s, sizes, mems)
        get = _table_times(transfer, transfer.download_s, sizes, mems)
    else:
        put = np.array([[transfer.put_s(float(s), float(m)) for m in mems] for s in sizes])
        get = np.array([[transfer.get_s(float(s), float(m)) for m in mems] for s in sizes])
    return TransferGrid(np.asarray(memories), put, get)


def _table_times(
    model: TableTransferModel,
    table: tuple[tuple[float, ...], ...],
    sizes: np.ndarray,
    mems: np.ndarray,
) -> np.ndarray:
    xs = np.asarray(model.object_mb, dtype=float)
    rows = []
    for row in table:
        ys = np.asarray(row, dtype=float)
        y = np.interp(sizes, xs, ys)
        slope = max(0.0, (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
        rows.append(np.where(sizes >= xs[-1], ys[-1] + slope * (sizes - xs[-1]), y))
    per_row = np.array(rows)  # [memory row][size]
    if len(model.memory_mb) == 1:
        return np.repeat(per_row[0][:, None], len(mems), axis=1)
    return np.array([np.interp(mems, model.memory_mb, per_row[:, j]) for j in range(len(sizes))])


def predict(
    scenario: Scenario,
    transfer: TransferModel,
    num_workers: int,
    num_aggregators: int,
    memory_mb: int,
    *,
    synchronous: bool = False,
    batch_size_agg: int | None = None,
) -> Prediction:
    """The model's prediction for one configuration (K > W or K < 1 come back with a problem).

    ``synchronous`` and ``batch_size_agg``: as in ``evaluate`` (the baselines)."""
    chunk_mb = scenario.wire_size_mb / max(1, num_aggregators)
    put = transfer.put_s(chunk_mb, memory_mb)
    get = transfer.get_s(chunk_mb, memory_mb)
    ev = evaluate(
        scenario,
        num_workers,
        num_aggregators,
        memory_mb,
        put,
        get,
        synchronous=synchronous,
        batch_size_agg=batch_size_agg,
    )
    return prediction_at(ev, scenario.batch_size_agg if batch_size_agg is None else batch_size_agg)

"""The fitted coefficients the optimizer plans with, read from the profiler's ``coeffs.json``.

Training time per iteration of a worker with memory M MB and batch B is ``a·(B + b)/(M + m)``;
flattening the model into the vector K-Reduce sends takes ``k1·M^k2``. ``model_size_mb`` is the
size of that vector. ``transfer`` (optional) is a transfer model as ``fasdl.transfer.to_dict``
writes it; without it the CLI's ``--transfer`` (default ``aws``) supplies one. Any other key is
kept as provenance and ignored by the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput

REQUIRED_KEYS = ("a", "b", "m", "k1", "k2", "model_size_mb")
OPTIONAL_KEYS = ("num_params", "transfer", "min_memory_mb")


@dataclass(frozen=True, kw_only=True)
class Coefficients:
    a: float  # s·MB per sample
    b: float  # samples: the fixed per-iteration overhead, in samples' worth of time
    m: float  # MB
    k1: float
    k2: float
    model_size_mb: float
    num_params: int | None = None
    min_memory_mb: int | None = None  # smallest memory the profile ran without running out
    transfer: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def train_s(self, batch: float, memory_mb: float) -> float:
        return self.a * (batch + self.b) / (memory_mb + self.m)

    def transform_s(self, memory_mb: float) -> float:
        return self.k1 * memory_mb**self.k2


def _number(d: dict[str, Any], key: str, where: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{where}: {key}", f"{value!r} is not a finite number")
    return float(value)


def coefficients_from_dict(d: Any, where: str = "coeffs") -> Coefficients:
    """Validate a coeffs.json object. Every problem names the key and what to do."""
    if not isinstance(d, dict):
        raise InvalidInput(where, f"expected a JSON object, got {type(d).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise InvalidInput(
            where,
            f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            f"coeffs.json needs {', '.join(REQUIRED_KEYS)} (run `fasdl fit`, or write them by hand)",
        )
    a, b, m, k1, k2, size = (_number(d, k, where) for k in REQUIRED_KEYS)
    if a <= 0:
        raise InvalidInput(f"{where}: a", f"{a:g} must be > 0", "training a sample takes time")
    if k1 < 0:
        raise InvalidInput(
            f"{where}: k1", f"{k1:g} must be ≥ 0", "the transformation cannot take negative time"
        )
    if size <= 0:
        raise InvalidInput(f"{where}: model_size_mb", f"{size:g} must be > 0")
    num_params = d.get("num_params")
    if num_params is not None and (
        isinstance(num_params, bool) or not isinstance(num_params, int) or num_params < 1
    ):
        raise InvalidInput(f"{where}: num_params", f"{num_params!r} is not a positive whole number")
    min_memory = d.get("min_memory_mb")
    if min_memory is not None and (
        isinstance(min_memory, bool) or not isinstance(min_memory, int) or min_memory < 1
    ):
        raise InvalidInput(
            f"{where}: min_memory_mb", f"{min_memory!r} is not a positive whole number of MB"
        )
    transfer = d.get("transfer")
    if transfer is not None and not isinstance(transfer, dict):
        raise InvalidInput(
            f"{where}: transfer", "must be an object as fasdl.transfer's to_dict writes it"
        )
    provenance = {k: v for k, v in d.items() if k not in REQUIRED_KEYS + OPTIONAL_KEYS}
    return Coefficients(
        a=a, b=b, m=m, k1=k1, k2=k2, model_size_mb=size,
        num_params=num_params, min_memory_mb=min_memory, transfer=transfer, provenance=provenance,
    )  # fmt: skip


def load_coefficients(path: str | Path) -> Coefficients:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(
            "coeffs", f"no file {str(p)!r}", "run `fasdl fit profile.csv --out coeffs.json` first"
        )
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InvalidInput("coeffs", f"{p} is not valid JSON: {e}") from e
    return coefficients_from_dict(data, where=str(p))

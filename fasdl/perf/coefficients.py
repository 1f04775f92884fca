"""coeffs.json: the fitted coefficients, written by ``fasdl fit`` and read by ``fasdl optimize``.

    {"a": 20.1, "b": 7.9, "m": 195.0, "k1": 2.6, "k2": -0.78,
     "model_size_mb": 44.6, "num_params": 11689512, "min_memory_mb": 512,
     "transfer": {"kind": "preset", "name": "aws"},
     "provenance": {...}}

Training one iteration of batch B at memory M MB takes ``a·(B + b)/(M + m)``; flattening the
model into the vector K-Reduce sends takes ``k1·M^k2``; ``model_size_mb`` is that vector's size.
These six keys are required, so that coefficients from elsewhere can be written by hand;
``model_size_mb`` may be null when the profile did not record it (the optimizer then refuses to
plan and asks for it). Optional: ``num_params``; ``min_memory_mb``, the smallest memory at which
the profile ran without running out of memory (the optimizer plans no smaller function);
``transfer``, a transfer model as ``fasdl.perf.transfer``'s ``to_dict`` writes it (without it the
optimizer's ``--transfer``, default ``aws``, supplies one); ``provenance``, an object saying where
every number came from, which nothing reads. Any other key is refused, naming the key, so that a
misspelt key is never silently ignored.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fasdl.errors import InvalidInput
from fasdl.perf.transfer import TransferModel, transfer_from_dict
from fasdl.platform.limits import vcpus_for_memory
from fasdl.validate import finite_number, whole_number

REQUIRED_KEYS = ("a", "b", "m", "k1", "k2", "model_size_mb")
# The whole job's terms beyond the training loop (``fasdl profile`` measures them, ``fasdl fit``
# writes them; absent, the term is left out of the prediction, as before they existed).
JOB_KEYS = (
    "startup_fixed_s",
    "startup_cpu_s",
    "load_cpu_s_per_sample",
    "train_cv",
    "train_cv_cpu",
    "eval_s_per_sample",
    "eval_fixed_s",
    "data_upload_s",
    "cpu_period_s",
)
OPTIONAL_KEYS = (
    "num_params",
    "min_memory_mb",
    "max_memory_mb",
    *JOB_KEYS,
    "transfer",
    "provenance",
)
_FIT_HINT = "run `fasdl fit profile.csv --out coeffs.json`"


@dataclass(frozen=True, kw_only=True)
class Coefficients:
    """The content of coeffs.json, validated on construction (numbers become ``float``/``int``)."""

    a: float  # s·MB per sample
    b: float  # samples: the fixed per-iteration overhead, in samples' worth of time
    m: float  # MB
    k1: float
    k2: float
    model_size_mb: float | None  # None: unknown (the optimizer needs it)
    num_params: int | None = None
    min_memory_mb: int | None = None  # smallest memory the profile ran without running out
    max_memory_mb: int | None = None  # largest memory profiled: above it the fit extrapolates
    # A function's start-up (process, imports, data, model) at memory M:
    # startup_fixed_s + startup_cpu_s / vCPUs(M), the CPU work scaling with the CPU share.
    startup_fixed_s: float | None = None
    startup_cpu_s: float | None = None
    # Then a worker loads its partition (get, decode, copy): CPU-seconds per sample at one vCPU,
    # one thread's work (``partition_load_s``).
    load_cpu_s_per_sample: float | None = None
    # The spread (std / mean) of one iteration's training time at memory M:
    # train_cv + train_cv_cpu / vCPUs(M) (a small CPU share is handed out in coarser slices).
    train_cv: float | None = None
    train_cv_cpu: float | None = None
    eval_s_per_sample: float | None = None  # the final evaluation, where the coordinator runs
    eval_fixed_s: float | None = None  # its model build, weight load and cold first pass
    # The coordinator's upload of the training set as the workers' partitions, once per job
    # before the first round (not billed: it runs where `fasdl train` runs).
    data_upload_s: float | None = None
    # The period in which the platform hands out a CPU share below one vCPU (the local
    # platform's duty cycle, Linux's CFS bandwidth period): a worker stopped for the rest of a
    # period holds up its peers (``optimizer.job.quota_wait_s``). None: not modelled.
    cpu_period_s: float | None = None
    transfer: Mapping[str, Any] | None = None  # a TransferModel's to_dict()
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("a", "b", "m", "k1", "k2"):
            object.__setattr__(self, name, finite_number(getattr(self, name), name))
        if self.a <= 0:
            raise InvalidInput("a", f"{self.a!r} must be > 0", "training a sample takes time")
        if self.k1 < 0:
            raise InvalidInput(
                "k1", f"{self.k1!r} must be ≥ 0", "the transformation cannot take negative time"
            )
        if self.model_size_mb is not None:
            size = finite_number(self.model_size_mb, "model_size_mb", unit="MB")
            if size <= 0:
                raise InvalidInput("model_size_mb", f"{size!r} is not a size in MB > 0")
            object.__setattr__(self, "model_size_mb", size)
        for name, unit in (("num_params", ""), ("min_memory_mb", "MB"), ("max_memory_mb", "MB")):
            value = getattr(self, name)
            if value is not None:
                n = whole_number(value, name, minimum=1, whole_floats=True, unit=unit)
                object.__setattr__(self, name, n)
        for name in JOB_KEYS:
            value = getattr(self, name)
            if value is not None:
                x = finite_number(value, name, minimum=0.0)
                object.__setattr__(self, name, x)
        if self.transfer is not None and not isinstance(self.transfer, Mapping):
            raise InvalidInput(
                "transfer", "must be an object as fasdl.perf.transfer's to_dict writes it"
            )
        if not isinstance(self.provenance, Mapping):
            raise InvalidInput("provenance", f"{self.provenance!r} is not an object")

    def train_s(self, batch: float, memory_mb: float) -> float:
        """Seconds to train one iteration of ``batch`` samples at ``memory_mb``."""
        return self.a * (batch + self.b) / (memory_mb + self.m)

    def transform_s(self, memory_mb: float) -> float:
        """Seconds to flatten the model into the vector K-Reduce sends, at ``memory_mb``."""
        seconds: float = self.k1 * memory_mb**self.k2
        return seconds

    def startup_s(self, memory_mb: Any) -> Any:
        """Seconds from a function's invocation to its first iteration at ``memory_mb`` (a
        number or an array): 0 when the profile did not measure it."""
        fixed = self.startup_fixed_s or 0.0
        cpu = self.startup_cpu_s or 0.0
        return fixed + cpu / vcpus_for_memory(memory_mb)

    def partition_load_s(self, memory_mb: Any, samples: Any) -> Any:
        """Seconds for a worker at ``memory_mb`` to load a partition of ``samples`` samples
        before its first iteration: 0 when the profile did not measure it."""
        per_sample = self.load_cpu_s_per_sample or 0.0
        return (
            per_sample
            * np.asarray(samples, dtype=float)
            / np.minimum(1.0, vcpus_for_memory(memory_mb))
        )

    def train_cv_at(self, memory_mb: Any) -> Any:
        """The spread of one iteration's training time at ``memory_mb``: 0 when not measured."""
        cv = (self.train_cv or 0.0) + (self.train_cv_cpu or 0.0) / vcpus_for_memory(memory_mb)
        return cv.clip(min=0.0) if hasattr(cv, "clip") else max(0.0, cv)

    def transfer_model(self) -> TransferModel | None:
        return None if self.transfer is None else transfer_from_dict(dict(self.transfer))

    def to_dict(self) -> dict[str, Any]:
        """coeffs.json's object: the required keys first, then the optional ones."""
        d: dict[str, Any] = {
            "a": self.a,
            "b": self.b,
            "m": self.m,
            "k1": self.k1,
            "k2": self.k2,
            "model_size_mb": self.model_size_mb,
            "num_params": self.num_params,
            "min_memory_mb": self.min_memory_mb,
            "max_memory_mb": self.max_memory_mb,
        }
        for name in JOB_KEYS:
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        if self.transfer is not None:
            d["transfer"] = dict(self.transfer)
        d["provenance"] = dict(self.provenance)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "coeffs") -> Coefficients:
        """Validate a coeffs.json object. Every problem names ``source``, the key and the fix."""
        if not isinstance(d, Mapping):
            raise InvalidInput(
                "coeffs",
                f"{source} must hold a JSON object with the keys {', '.join(REQUIRED_KEYS)}",
            )
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise InvalidInput(
                "coeffs",
                f"{source} lacks {', '.join(missing)}",
                f"{_FIT_HINT}, or write the keys by hand (model_size_mb may be null)",
            )
        unknown = sorted(set(d) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if unknown:
            raise InvalidInput(
                "coeffs",
                f"{source} has unknown keys {', '.join(unknown)}",
                f"keys: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}; notes go inside 'provenance'",
            )
        try:
            coeffs = cls(
                a=d["a"],
                b=d["b"],
                m=d["m"],
                k1=d["k1"],
                k2=d["k2"],
                model_size_mb=d["model_size_mb"],
                num_params=d.get("num_params"),
                min_memory_mb=d.get("min_memory_mb"),
                max_memory_mb=d.get("max_memory_mb"),
                **{name: d.get(name) for name in JOB_KEYS},
                transfer=d.get("transfer"),
                provenance=d.get("provenance") or {},
            )
            _check_transfer(coeffs)
        except InvalidInput as e:
            raise e.named_as(f"{source}: {e.field}") from None
        return coeffs


def _check_transfer(coeffs: Coefficients) -> None:
    """Build the transfer model once, so a bad one fails naming coeffs.json, not in a search."""
    try:
        coeffs.transfer_model()
    except InvalidInput:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput(
            "transfer",
            f"malformed transfer model ({e!r})",
            "refit with `fasdl fit --transfer`, or drop it and pass --transfer to fasdl optimize",
        ) from e


def write_coefficients(path: str | Path, coeffs: Coefficients) -> None:
    """Write atomically (a temporary file renamed), so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps(coeffs.to_dict()) + "\n")
    os.replace(tmp, path)


def read_coefficients(path: str | Path) -> Coefficients:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput("coeffs", f"no file {str(path)!r}", f"{_FIT_HINT} first")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InvalidInput("coeffs", f"{path} line {e.lineno}: not valid JSON ({e.msg})") from e
    return Coefficients.from_dict(d, source=str(path))


def dumps(d: Mapping[str, Any]) -> str:
    """Indented JSON with each innermost object (a transfer table row, say) on one line."""
    text = json.dumps(d, indent=2, allow_nan=False)
    # A raw newline never occurs inside a JSON string, so "{\n" and "\n}" are structural.
    return re.sub(
        r"\{\n\s+([^{}\[\]]*?)\n\s+\}",
        lambda m: "{" + " ".join(x.strip() for x in m.group(1).splitlines()) + "}",
        text,
    )

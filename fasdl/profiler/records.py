"""The profile file: one row per (memory, batch size) run, written as each run finishes.

Our format is a CSV with the header ``PROFILE_COLUMNS``; empty cells are "not measured". The
seed's ``profiling.txt`` (one run a line: batch size, memory, train time, trans time, separated
by spaces) reads too, so existing profiles carry over; it knows nothing of the model's size.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, fields
from pathlib import Path

from fasdl.errors import InvalidInput
from fasdl.platform.limits import check_memory_mb
from fasdl.validate import finite_number, positive_number, whole_number

STATUSES = ("ok", "out_of_memory", "failed")
PROFILE_COLUMNS = (
    "memory_mb",
    "batch_size",
    "train_s",
    "trans_s",
    "peak_memory_mb",
    "billed_ms",
    "status",
    "model",
    "model_size_mb",
    "num_params",
    "startup_s",
    "load_s_per_sample",
    "train_cv",
    "eval_s_per_sample",
    "eval_fixed_s",
    "data_upload_s",
    "cpu_period_s",
)
# the whole job's columns: optional, each a number >= 0
JOB_COLUMNS = PROFILE_COLUMNS[PROFILE_COLUMNS.index("startup_s") :]
_REQUIRED_COLUMNS = ("memory_mb", "batch_size", "train_s", "trans_s")


@dataclass(frozen=True)
class ProfileSample:
    """One run: the median training and transformation time per iteration at one configuration.

    ``train_s`` and ``trans_s`` are required (> 0) when ``status`` is "ok"; a run that ran out of
    memory or failed may leave them ``None``. ``model``, ``model_size_mb`` (the flattened
    parameter vector K-Reduce sends) and ``num_params`` describe the model; the profiler repeats
    them on every row so that a file stays self-describing however it was cut short.
    """

    memory_mb: int
    batch_size: int
    train_s: float | None
    trans_s: float | None
    peak_memory_mb: float | None = None
    billed_ms: float | None = None
    status: str = "ok"
    model: str = ""
    model_size_mb: float | None = None
    num_params: int | None = None
    # The whole job's terms (absent in profiles written before them): the function's start-up
    # (invocation to model ready: process, imports, data, model), the spread of single
    # training iterations (std / mean), the driver's evaluation seconds per sample and its
    # fixed part (building the model, loading the weights, a cold first pass), and the driver's
    # upload of the training set (the coordinator puts it as the workers' partitions).
    startup_s: float | None = None
    # A worker's data, loaded before its first iteration (get, decode, copy), per sample at this
    # memory; ``startup_s`` leaves it out (a worker loads D/W samples, the profile a sample).
    load_s_per_sample: float | None = None
    train_cv: float | None = None
    eval_s_per_sample: float | None = None
    eval_fixed_s: float | None = None
    data_upload_s: float | None = None
    # The platform's CPU period where it duty-cycles a share below one vCPU (None: not said).
    cpu_period_s: float | None = None

    def __post_init__(self) -> None:
        # A whole float (1024.0) is accepted and stored as an int.
        object.__setattr__(self, "memory_mb", check_memory_mb(self.memory_mb, "memory_mb"))
        whole_number(self.batch_size, "batch_size", minimum=1)
        if self.status not in STATUSES:
            raise InvalidInput(
                "status", f"{self.status!r} is not a status", f"use one of {', '.join(STATUSES)}"
            )
        for name in ("train_s", "trans_s"):
            value = getattr(self, name)
            if value is None:
                if self.status == "ok":
                    raise InvalidInput(
                        name, "missing on a run whose status is ok", "give the measured seconds"
                    )
                continue
            positive_number(value, name, unit="s")
        for name in ("peak_memory_mb", "billed_ms", "model_size_mb"):
            value = getattr(self, name)
            if value is not None:
                positive_number(value, name)
        for name in JOB_COLUMNS:
            value = getattr(self, name)
            if value is not None:
                finite_number(value, name, minimum=0.0)
        if self.num_params is not None:
            whole_number(self.num_params, "num_params", minimum=1)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Profile:
    """A whole profile file: its samples (every status) and what it says about the model."""

    samples: tuple[ProfileSample, ...]
    source: str
    format: str  # "csv" | "seed"
    model: str = ""
    model_size_mb: float | None = None
    num_params: int | None = None

    @property
    def ok_samples(self) -> tuple[ProfileSample, ...]:
        return tuple(s for s in self.samples if s.ok)

    @property
    def min_memory_mb(self) -> int | None:
        """The smallest memory at which a run finished without running out of memory (status ok).

        Memory sizes where every run ran out of memory (or failed) are below it: the optimizer
        plans no function smaller. None when no run finished.
        """
        return min((s.memory_mb for s in self.samples if s.ok), default=None)

    @property
    def max_memory_mb(self) -> int | None:
        """The largest memory with a finished run: above it, the fit extrapolates."""
        return max((s.memory_mb for s in self.samples if s.ok), default=None)

    def count(self, status: str) -> int:
        return sum(1 for s in self.samples if s.status == status)


def read_profile(path: str | Path) -> Profile:
    """Read our profile CSV or the seed's ``profiling.txt``; the format is told by the first line."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(
            "profile",
            f"no file {str(path)!r}",
            "give the CSV that `fasdl profile` wrote, or a profiling.txt",
        )
    text = path.read_text()
    first = next(
        (line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")),
        None,
    )
    if first is None:
        raise InvalidInput(
            "profile", f"{path} is empty", "profile the model first (`fasdl profile`)"
        )
    if "memory_mb" in first.split(","):
        return _read_csv(text, str(path))
    return _read_seed(text, str(path))


def _read_csv(text: str, name: str) -> Profile:
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InvalidInput(
            "profile",
            f"{name} lacks the columns {', '.join(missing)}",
            f"columns: {','.join(PROFILE_COLUMNS)}",
        )
    samples = []
    for row in reader:
        lineno = reader.line_num
        if None in row:
            raise InvalidInput(
                "profile", f"{name} line {lineno}: more cells than the header has columns"
            )
        if not any((v or "").strip() for v in row.values()):
            continue
        try:
            samples.append(_sample_from_cells(row))
        except InvalidInput as e:
            cut_short = lineno == len(text.splitlines()) and not text.endswith("\n")
            fix = (
                "the last row looks cut short by an interrupted run: delete it"
                if cut_short
                else e.fix
            )
            raise InvalidInput("profile", f"{name} line {lineno}: {e}", fix) from e
    if not samples:
        raise InvalidInput(
            "profile",
            f"{name} has a header but no runs",
            "profile the model first (`fasdl profile`)",
        )
    return _profile(tuple(samples), name, "csv")


def _sample_from_cells(row: dict[str, str]) -> ProfileSample:
    def cell(c: str) -> str:
        return (row.get(c) or "").strip()

    def number(c: str) -> float | None:
        v = cell(c)
        if not v:
            return None
        try:
            return float(v)
        except ValueError as e:
            raise InvalidInput(c, f"{v!r} is not a number") from e

    def whole(c: str) -> int | None:
        x = number(c)
        return None if x is None else whole_number(x, c, whole_floats=True)

    memory_mb, batch_size = whole("memory_mb"), whole("batch_size")
    if memory_mb is None or batch_size is None:
        raise InvalidInput("memory_mb" if memory_mb is None else "batch_size", "empty")
    return ProfileSample(
        memory_mb=memory_mb,
        batch_size=batch_size,
        train_s=number("train_s"),
        trans_s=number("trans_s"),
        peak_memory_mb=number("peak_memory_mb"),
        billed_ms=number("billed_ms"),
        status=cell("status") or "ok",
        model=cell("model"),
        model_size_mb=number("model_size_mb"),
        num_params=whole("num_params"),
        startup_s=number("startup_s"),
        load_s_per_sample=number("load_s_per_sample"),
        train_cv=number("train_cv"),
        eval_s_per_sample=number("eval_s_per_sample"),
        eval_fixed_s=number("eval_fixed_s"),
        data_upload_s=number("data_upload_s"),
        cpu_period_s=number("cpu_period_s"),
    )


def _read_seed(text: str, name: str) -> Profile:
    samples = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split()
        if len(cells) != 4:
            raise InvalidInput(
                "profile",
                f"{name} line {lineno}: {len(cells)} fields, the seed's profiling.txt has 4 "
                "(batch size, memory, train time, trans time)",
                f"or give a CSV whose header has {','.join(_REQUIRED_COLUMNS)}",
            )
        try:
            batch, memory, train_s, trans_s = (float(c) for c in cells)
        except ValueError as e:
            raise InvalidInput("profile", f"{name} line {lineno}: {e}") from e
        try:
            b = whole_number(batch, "batch_size", whole_floats=True)
            m = whole_number(memory, "memory_mb", whole_floats=True)
            samples.append(ProfileSample(m, b, train_s, trans_s))
        except InvalidInput as e:
            raise InvalidInput("profile", f"{name} line {lineno}: {e}", e.fix) from e
    return _profile(tuple(samples), name, "seed")


def _profile(samples: tuple[ProfileSample, ...], name: str, fmt: str) -> Profile:
    described = {}
    for attr in ("model", "model_size_mb", "num_params"):
        values = {getattr(s, attr) for s in samples} - {None, ""}
        if len(values) > 1:
            shown = ", ".join(sorted(str(v) for v in values))
            raise InvalidInput(
                "profile",
                f"{name} mixes runs with different {attr}: {shown}",
                "profile one model per file",
            )
        described[attr] = values.pop() if values else None
    return Profile(
        samples,
        name,
        fmt,
        model=described["model"] or "",
        model_size_mb=described["model_size_mb"],
        num_params=described["num_params"],
    )


def append_sample(path: str | Path, sample: ProfileSample) -> None:
    """Append one run, writing the header first if the file is new; the row is on disk on return."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            header = f.readline().strip()
        if header != ",".join(PROFILE_COLUMNS):
            raise InvalidInput(
                "profile",
                f"{path} is not a fasdl profile CSV (its header is {header[:80]!r})",
                "write to a new file",
            )
    with open(path, "a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(PROFILE_COLUMNS)
        writer.writerow(_cells(sample))
        f.flush()
        os.fsync(f.fileno())


def _cells(sample: ProfileSample) -> list[str]:
    out = []
    for f in fields(ProfileSample):
        value = getattr(sample, f.name)
        out.append("" if value is None else repr(value) if isinstance(value, float) else str(value))
    return out


assert tuple(f.name for f in fields(ProfileSample)) == PROFILE_COLUMNS

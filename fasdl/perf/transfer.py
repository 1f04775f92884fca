"""Transfer-time models: seconds to put or get an object of S MB from a function of M MB.

Every model lives here: the measured table (``TableTransferModel``), latency plus size over
bandwidth (``LatencyBandwidthModel``), the reference CSV format and the presets. The optimizer
needs only ``put_s`` and ``get_s``; the profiler fits the models (``fasdl.profiler.fit_transfer``).
A model serialises to a plain dict (``to_dict`` / ``transfer_from_dict``) that lives in
coeffs.json. The AWS preset is the table the original FasDL measured on Lambda against S3. Only
NumPy is imported: loading a model must not pay for SciPy.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fasdl.errors import InvalidInput

CSV_COLUMNS = ("memory_mb", "object_mb", "upload_s", "download_s", "samples")
PRESETS = {"aws": "aws-lambda-s3-transfer-times.csv"}
LATENCY_BANDWIDTH = "latency_bandwidth"
_ROW_KEYS = ("memory_mb", "put_latency_s", "put_mb_per_s", "get_latency_s", "get_mb_per_s")

# The wire formats of the model vector (``fasdl train --wire``; the codec is
# ``fasdl.training.wire``) and the bytes one value takes in each: a transfer of S MB of float32
# values is S * bytes / 4 MB on the wire. int8 adds one float32 scale per block of INT8_BLOCK
# values (the per-object headers, 16 to 40 bytes, are left out).
INT8_BLOCK = 256
WIRE_BYTES_PER_VALUE = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0 + 4.0 / INT8_BLOCK}
WIRES = tuple(WIRE_BYTES_PER_VALUE)


def wire_size_mb(fp32_size_mb: float, wire: str) -> float:
    """The size on the wire of a float32 vector of ``fp32_size_mb`` MB sent as ``wire``."""
    if wire not in WIRE_BYTES_PER_VALUE:
        raise InvalidInput("wire", f"unknown wire format {wire!r}", f"known: {', '.join(WIRES)}")
    return fp32_size_mb * WIRE_BYTES_PER_VALUE[wire] / 4.0


class TransferModel(Protocol):
    def put_s(self, size_mb: float, memory_mb: float) -> float: ...

    def get_s(self, size_mb: float, memory_mb: float) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TableTransferModel:
    """Interpolation in a measured table: linear in size per memory row, then linear in memory.

    Beyond the largest memory measured the last row holds (bandwidth stops growing); beyond the
    largest size, the last segment's slope extends; below the smallest size, the smallest time.
    """

    memory_mb: tuple[float, ...]
    object_mb: tuple[float, ...]
    upload_s: tuple[tuple[float, ...], ...]  # [memory][size]
    download_s: tuple[tuple[float, ...], ...]
    source: str = "table"

    @classmethod
    def from_rows(cls, rows: list[dict[str, float]], source: str = "table") -> TableTransferModel:
        if not rows:
            raise InvalidInput("transfer", "the transfer table has no rows")
        mems = sorted({float(r["memory_mb"]) for r in rows})
        sizes = sorted({float(r["object_mb"]) for r in rows})
        index = {(float(r["memory_mb"]), float(r["object_mb"])): r for r in rows}
        up: list[tuple[float, ...]] = []
        down: list[tuple[float, ...]] = []
        for m in mems:
            have = [s for s in sizes if (m, s) in index]
            if len(have) < 2:
                raise InvalidInput(
                    "transfer", f"memory {m:g} MB has fewer than 2 object sizes in the table"
                )
            # Fill sizes missing for this memory by interpolating the ones present.
            up.append(
                tuple(
                    _interp_extrap(s, have, [float(index[(m, h)]["upload_s"]) for h in have])
                    for s in sizes
                )
            )
            down.append(
                tuple(
                    _interp_extrap(s, have, [float(index[(m, h)]["download_s"]) for h in have])
                    for s in sizes
                )
            )
        return cls(tuple(mems), tuple(sizes), tuple(up), tuple(down), source)

    def _lookup(
        self, table: tuple[tuple[float, ...], ...], size_mb: float, memory_mb: float
    ) -> float:
        per_row = [_interp_extrap(size_mb, self.object_mb, row) for row in table]
        if len(self.memory_mb) == 1:
            return per_row[0]
        return float(np.interp(memory_mb, self.memory_mb, per_row))

    def put_s(self, size_mb: float, memory_mb: float) -> float:
        return self._lookup(self.upload_s, size_mb, memory_mb)

    def get_s(self, size_mb: float, memory_mb: float) -> float:
        return self._lookup(self.download_s, size_mb, memory_mb)

    def rows(self) -> list[dict[str, float]]:
        return [
            {
                "memory_mb": m,
                "object_mb": s,
                "upload_s": self.upload_s[i][j],
                "download_s": self.download_s[i][j],
                "samples": 1,
            }
            for i, m in enumerate(self.memory_mb)
            for j, s in enumerate(self.object_mb)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "table", "source": self.source, "rows": self.rows()}


@dataclass(frozen=True)
class LatencyBandwidthModel:
    """t = latency + size_mb / mb_per_s, with both parameters per memory size (``TransferModel``)."""

    memory_mb: tuple[float, ...]
    put_latency_s: tuple[float, ...]
    put_mb_per_s: tuple[float, ...]
    get_latency_s: tuple[float, ...]
    get_mb_per_s: tuple[float, ...]
    source: str = "fit"

    def __post_init__(self) -> None:
        n = len(self.memory_mb)
        columns = (self.put_latency_s, self.put_mb_per_s, self.get_latency_s, self.get_mb_per_s)
        if n == 0 or any(len(c) != n for c in columns):
            raise InvalidInput(
                "transfer", "a latency_bandwidth model needs one row of parameters per memory size"
            )
        if list(self.memory_mb) != sorted(set(self.memory_mb)):
            raise InvalidInput(
                "transfer", "latency_bandwidth memory sizes must be distinct and increasing"
            )
        values = np.asarray(columns, dtype=float)
        if (
            not np.all(np.isfinite(values))
            or np.any(values[[0, 2]] < 0)
            or np.any(values[[1, 3]] <= 0)
        ):
            raise InvalidInput("transfer", "latencies must be ≥ 0 s and bandwidths > 0 MB/s")

    def _time(
        self,
        latency: tuple[float, ...],
        mb_per_s: tuple[float, ...],
        size_mb: float,
        memory_mb: float,
    ) -> float:
        lat = float(np.interp(memory_mb, self.memory_mb, latency))
        bw = float(np.interp(memory_mb, self.memory_mb, mb_per_s))
        return lat + size_mb / bw

    def put_s(self, size_mb: float, memory_mb: float) -> float:
        return self._time(self.put_latency_s, self.put_mb_per_s, size_mb, memory_mb)

    def get_s(self, size_mb: float, memory_mb: float) -> float:
        return self._time(self.get_latency_s, self.get_mb_per_s, size_mb, memory_mb)

    def to_dict(self) -> dict[str, Any]:
        rows = [
            dict(zip(_ROW_KEYS, values, strict=True))
            for values in zip(
                self.memory_mb,
                self.put_latency_s,
                self.put_mb_per_s,
                self.get_latency_s,
                self.get_mb_per_s,
                strict=True,
            )
        ]
        return {"kind": LATENCY_BANDWIDTH, "source": self.source, "rows": rows}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencyBandwidthModel:
        if d.get("kind") != LATENCY_BANDWIDTH:
            raise InvalidInput("transfer", f"kind {d.get('kind')!r} is not {LATENCY_BANDWIDTH!r}")
        rows = d.get("rows")
        if not isinstance(rows, list) or not rows:
            raise InvalidInput(
                "transfer", "a latency_bandwidth model needs a non-empty list 'rows'"
            )
        try:
            rows = sorted(rows, key=lambda r: float(r["memory_mb"]))
            columns = [tuple(float(r[k]) for r in rows) for k in _ROW_KEYS]
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(
                "transfer",
                f"latency_bandwidth rows need the keys {', '.join(_ROW_KEYS)} as numbers ({e!r})",
            ) from e
        memory, put_latency, put_bw, get_latency, get_bw = columns
        return cls(
            memory, put_latency, put_bw, get_latency, get_bw, source=str(d.get("source", "fit"))
        )


def _interp_extrap(x: float, xs: Any, ys: Any) -> float:
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return float(ys[-1] + max(0.0, slope) * (x - xs[-1]))
    return float(np.interp(x, xs, ys))


def read_transfer_csv(source: str | Path | io.TextIOBase) -> list[dict[str, float]]:
    """Rows of a transfer table in the reference format (memory_mb,object_mb,upload_s,download_s,samples)."""
    if isinstance(source, io.TextIOBase):
        text = source.read()
        name = "transfer table"
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(
                "transfer",
                f"no file {str(path)!r}",
                f"give a CSV with columns {','.join(CSV_COLUMNS)} or a preset: {', '.join(PRESETS)}",
            )
        text = path.read_text()
        name = str(path)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS[:4] if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInput(
            "transfer",
            f"{name} lacks the columns {', '.join(missing)}",
            f"columns: {','.join(CSV_COLUMNS)}",
        )
    rows = []
    for lineno, r in enumerate(reader, start=2):
        try:
            row = {c: float(r[c]) for c in CSV_COLUMNS[:4]}
            row["samples"] = float(r.get("samples") or 1)
        except (TypeError, ValueError) as e:
            raise InvalidInput("transfer", f"{name} line {lineno}: {e}") from e
        if row["upload_s"] <= 0 or row["download_s"] <= 0 or row["object_mb"] <= 0:
            raise InvalidInput("transfer", f"{name} line {lineno}: times and sizes must be > 0")
        rows.append(row)
    return rows


def write_transfer_csv(rows: list[dict[str, float]], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, 1) for c in CSV_COLUMNS})


def load_transfer(spec: str) -> TransferModel:
    """A preset name (``aws``) or the path of a CSV table in the reference format."""
    if spec in PRESETS:
        ref = resources.files("fasdl.presets").joinpath(PRESETS[spec])
        return TableTransferModel.from_rows(
            read_transfer_csv(io.StringIO(ref.read_text())), source=f"preset:{spec}"
        )
    if spec.endswith(".csv") or Path(spec).exists():
        return TableTransferModel.from_rows(read_transfer_csv(spec), source=spec)
    raise InvalidInput(
        "transfer",
        f"unknown transfer preset {spec!r}",
        f"presets: {', '.join(PRESETS)}, or a CSV file",
    )


def transfer_from_dict(d: dict[str, Any]) -> TransferModel:
    """Inverse of ``to_dict`` for every model kind."""
    kind = d.get("kind")
    if kind == "table":
        return TableTransferModel.from_rows(d["rows"], source=d.get("source", "table"))
    if kind == "preset":
        return load_transfer(d["name"])
    if kind == LATENCY_BANDWIDTH:
        return LatencyBandwidthModel.from_dict(d)
    raise InvalidInput(
        "transfer",
        f"unknown transfer model kind {kind!r}",
        "kinds: table, preset, latency_bandwidth",
    )

"""Transfer-time models: seconds to put or get an object of S MB from a function of M MB.

The optimizer needs only ``put_s`` and ``get_s``; the profiler fits or tabulates them. A model
serialises to a plain dict (``to_dict`` / ``transfer_from_dict``) that lives in coeffs.json.
The AWS preset is the table the original FasDL measured on Lambda against S3.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fasdl.errors import InvalidInput

CSV_COLUMNS = ("memory_mb", "object_mb", "upload_s", "download_s", "samples")
PRESETS = {"aws": "aws-lambda-s3-transfer-times.csv"}


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
    if kind == "latency_bandwidth":
        from fasdl.profiler.fit_transfer import LatencyBandwidthModel

        return LatencyBandwidthModel.from_dict(d)
    raise InvalidInput(
        "transfer",
        f"unknown transfer model kind {kind!r}",
        "kinds: table, preset, latency_bandwidth",
    )

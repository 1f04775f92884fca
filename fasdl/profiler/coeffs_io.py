"""coeffs.json: the fitted coefficients, the optimizer's input.

    {"a": 20.1, "b": 7.9, "m": 195.0, "k1": 2.6, "k2": -0.78,
     "model_size_mb": 44.6, "num_params": 11689512,
     "transfer": {"kind": "preset", "name": "aws"},
     "provenance": {...}}

``a``, ``b``, ``m`` (T_train = a·(B + b)/(M + m)), ``k1``, ``k2`` (T_trans = k1·M^k2) and
``model_size_mb`` are required, so that coefficients from elsewhere can be written by hand;
``model_size_mb`` may be null when the profile did not record it (the optimizer will ask).
``num_params``, ``transfer`` (a ``TransferModel.to_dict()``) and ``provenance`` are optional.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput
from fasdl.transfer import TransferModel, transfer_from_dict

REQUIRED_KEYS = ("a", "b", "m", "k1", "k2", "model_size_mb")
OPTIONAL_KEYS = ("num_params", "transfer", "provenance")


@dataclass(frozen=True)
class Coeffs:
    a: float
    b: float
    m: float
    k1: float
    k2: float
    model_size_mb: float | None
    num_params: int | None = None
    transfer: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("a", "b", "m", "k1", "k2"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise InvalidInput(name, f"{value!r} is not a finite number")
        for name in ("a", "k1"):
            if getattr(self, name) <= 0:
                raise InvalidInput(
                    name, f"{getattr(self, name)!r} must be > 0", "times are positive"
                )
        if self.model_size_mb is not None and (
            isinstance(self.model_size_mb, bool)
            or not isinstance(self.model_size_mb, int | float)
            or not math.isfinite(self.model_size_mb)
            or self.model_size_mb <= 0
        ):
            raise InvalidInput("model_size_mb", f"{self.model_size_mb!r} is not a size in MB > 0")
        if self.num_params is not None and (
            isinstance(self.num_params, bool)
            or not isinstance(self.num_params, int)
            or self.num_params < 1
        ):
            raise InvalidInput("num_params", f"{self.num_params!r} is not a positive whole number")
        if self.transfer is not None and not isinstance(self.transfer, Mapping):
            raise InvalidInput("transfer", "must be an object with a 'kind'")

    def transfer_model(self) -> TransferModel | None:
        return None if self.transfer is None else transfer_from_dict(dict(self.transfer))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "a": self.a,
            "b": self.b,
            "m": self.m,
            "k1": self.k1,
            "k2": self.k2,
            "model_size_mb": self.model_size_mb,
            "num_params": self.num_params,
        }
        if self.transfer is not None:
            d["transfer"] = dict(self.transfer)
        d["provenance"] = dict(self.provenance)
        return d


def coeffs_from_dict(d: Any, source: str = "coeffs") -> Coeffs:
    if not isinstance(d, Mapping):
        raise InvalidInput(
            "coeffs", f"{source} must hold a JSON object with the keys {', '.join(REQUIRED_KEYS)}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise InvalidInput(
            "coeffs",
            f"{source} lacks {', '.join(missing)}",
            "run `fasdl fit profile.csv --out coeffs.json`, or write the keys by hand "
            "(model_size_mb may be null)",
        )
    unknown = sorted(set(d) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise InvalidInput(
            "coeffs",
            f"{source} has unknown keys {', '.join(unknown)}",
            f"keys: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}",
        )
    num_params = d.get("num_params")
    if isinstance(num_params, float) and num_params.is_integer():
        num_params = int(num_params)
    coeffs = Coeffs(
        a=d["a"],
        b=d["b"],
        m=d["m"],
        k1=d["k1"],
        k2=d["k2"],
        model_size_mb=d["model_size_mb"],
        num_params=num_params,
        transfer=d.get("transfer"),
        provenance=d.get("provenance") or {},
    )
    if coeffs.transfer is not None:
        coeffs.transfer_model()  # fail here, naming coeffs.json, rather than in the optimizer
    return coeffs


def write_coeffs(path: str | Path, coeffs: Coeffs) -> None:
    """Write atomically (a temporary file renamed), so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps(coeffs.to_dict()) + "\n")
    os.replace(tmp, path)


def dumps(d: Mapping[str, Any]) -> str:
    """Indented JSON with each innermost object (a transfer table row, say) on one line."""
    text = json.dumps(d, indent=2, allow_nan=False)
    # A raw newline never occurs inside a JSON string, so "{\n" and "\n}" are structural.
    return re.sub(
        r"\{\n\s+([^{}\[\]]*?)\n\s+\}",
        lambda m: "{" + " ".join(x.strip() for x in m.group(1).splitlines()) + "}",
        text,
    )


def read_coeffs(path: str | Path) -> Coeffs:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(
            "coeffs",
            f"no file {str(path)!r}",
            "run `fasdl fit profile.csv --out coeffs.json` first",
        )
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InvalidInput("coeffs", f"{path} line {e.lineno}: not valid JSON ({e.msg})") from e
    return coeffs_from_dict(d, source=str(path))

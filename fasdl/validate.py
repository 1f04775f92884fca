"""The checks every layer repeats on a value it was given: one wording, one place.

Each returns the value (as ``int`` or ``float``) or raises ``InvalidInput`` naming ``field``
(the package's own name; the CLI renames it to the flag the user typed). ``bool`` is never a
number here, although Python counts ``True`` as 1. numpy scalars are numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from numbers import Integral, Real
from typing import Any

from fasdl.errors import InvalidInput

__all__ = [
    "finite_number",
    "json_object",
    "known_keys",
    "positive_number",
    "required",
    "whole_number",
]


def _wanted(kind: str, minimum: float | None, maximum: float | None, unit: str) -> str:
    """``a whole number of MB ≥ 1``: what the value should have been."""
    text = f"a {kind}" + (f" of {unit}" if unit else "")
    if minimum is not None and maximum is None:
        text += f" ≥ {_bound(minimum)}"
    elif maximum is not None and minimum is None:
        text += f" ≤ {_bound(maximum)}"
    return text


def _shown(x: float) -> str:
    """A value as the user gave it: 20000, 0.5, 1e-12."""
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else f"{x:g}"


def _bound(x: float) -> str:
    """A limit as the docs write it: 10,240, 0.5."""
    return f"{int(x):,}" if x == int(x) and abs(x) < 1e15 else f"{x:g}"


def whole_number(
    value: object,
    field: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    fix: str = "",
    whole_floats: bool = False,
    unit: str = "",
) -> int:
    """``value`` as an ``int``: a whole number within [``minimum``, ``maximum``] (bounds included).

    ``whole_floats`` also accepts a float with a whole value (``1024.0``), as JSON and CSV give.
    """
    n: int | None = None
    if isinstance(value, Integral) and not isinstance(value, bool):
        n = int(value)
    elif whole_floats and isinstance(value, Real) and not isinstance(value, bool):
        x = float(value)
        if math.isfinite(x) and x == int(x):
            n = int(x)
    if n is None:
        raise InvalidInput(
            field, f"{value!r} is not {_wanted('whole number', minimum, maximum, unit)}", fix
        )
    if (minimum is not None and n < minimum) or (maximum is not None and n > maximum):
        raise InvalidInput(field, _out_of_range(n, minimum, maximum, unit), fix)
    return n


def finite_number(
    value: object,
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    fix: str = "",
    unit: str = "",
) -> float:
    """``value`` as a ``float``: a finite number within [``minimum``, ``maximum``] (bounds included)."""
    if not isinstance(value, Real) or isinstance(value, bool):
        raise InvalidInput(
            field, f"{value!r} is not {_wanted('number', minimum, maximum, unit)}", fix
        )
    x = float(value)
    if not math.isfinite(x):
        raise InvalidInput(field, f"{value!r} is not a finite number", fix)
    if (minimum is not None and x < minimum) or (maximum is not None and x > maximum):
        raise InvalidInput(field, _out_of_range(x, minimum, maximum, unit), fix)
    return x


def positive_number(value: object, field: str, *, fix: str = "", unit: str = "") -> float:
    """``value`` as a ``float``: a finite number > 0."""
    x = finite_number(value, field, fix=fix, unit=unit)
    if not x > 0:
        u = f" {unit}" if unit else ""
        raise InvalidInput(field, f"{_shown(x)}{u} is not > 0", fix)
    return x


def _out_of_range(x: float, minimum: float | None, maximum: float | None, unit: str) -> str:
    u = f" {unit}" if unit else ""
    if minimum is not None and maximum is not None:
        return f"{_shown(x)}{u} is outside {_bound(minimum)}–{_bound(maximum)}{u}"
    if minimum is not None and x < minimum:
        return f"{_shown(x)}{u} is below {_bound(minimum)}"
    assert maximum is not None
    return f"{_shown(x)}{u} is above {_bound(maximum)}"


# -- JSON objects (payloads and results that cross a process boundary) ---------------------------
def json_object(value: object, field: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object (a mapping with string keys)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInput(field, f"a {type(value).__name__} is not a JSON object")
    return value


def required(d: Mapping[str, Any], key: str, where: str = "") -> Any:
    """``d[key]``; a missing key is named ``where.key``."""
    if key not in d:
        raise InvalidInput(f"{where}.{key}" if where else key, "missing")
    return d[key]


def known_keys(d: Mapping[str, Any], known: Collection[str], where: str) -> None:
    """Refuse keys outside ``known``, naming them (a typo would otherwise be ignored)."""
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise InvalidInput(
            where, f"unknown key(s) {', '.join(unknown)}", f"known: {', '.join(sorted(known))}"
        )

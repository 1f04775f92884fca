"""Prices: what a job's functions and store requests cost. Read from a replaceable JSON table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput

DEFAULT_PRICES = "aws-prices.json"


@dataclass(frozen=True)
class Prices:
    gb_second_usd: float
    per_invocation_usd: float
    per_request_usd: dict[str, float]  # by kind: PUT, GET, LIST, DELETE, HEAD
    source: str = "preset:aws"

    def function_cost(self, gb_s: float, invocations: int) -> float:
        return gb_s * self.gb_second_usd + invocations * self.per_invocation_usd

    def storage_cost(self, requests: dict[str, int]) -> float:
        return sum(n * self.per_request_usd.get(kind, 0.0) for kind, n in requests.items())


def load_prices(path: str | Path | None = None, *, arch: str = "x86") -> Prices:
    """The AWS preset (default) or a JSON file of the same shape."""
    if path is None:
        text = resources.files("fasdl.presets").joinpath(DEFAULT_PRICES).read_text()
        source = "preset:aws"
    else:
        p = Path(path)
        if not p.is_file():
            raise InvalidInput("prices", f"no file {str(p)!r}", "give a JSON price table like fasdl/presets/aws-prices.json")
        text, source = p.read_text(), str(p)
    try:
        d: dict[str, Any] = json.loads(text)
        fn = d["function"]
        gb_s = fn["usd_per_gb_second"][arch]
        per_invocation = fn["usd_per_million_requests"] / 1e6
        per_request = {k: v / 1000 for k, v in d["store"]["usd_per_1000_requests"].items()}
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise InvalidInput("prices", f"{source} is not a price table: missing or bad {e}") from e
    return Prices(gb_s, per_invocation, per_request, source)

"""Price tables: what a GB-second, an invocation and each kind of store request cost.

The one price table, used by the optimizer (predicted cost) and by K-Reduce (a job's measured
cost). The AWS table ships as ``fasdl/presets/aws-prices.json``; ``--prices FILE`` replaces it
with a file of the same shape. No price lives in code. The request kinds are the store's
(``fasdl.store.REQUEST_KINDS``); a kind in ``BILLED_AS`` (HEAD) is billed as another (GET), as
S3 does, unless the table prices it itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput
from fasdl.store.base import REQUEST_KINDS
from fasdl.validate import finite_number

PRESETS = {"aws": "aws-prices.json"}
BILLED_AS = {"HEAD": "GET"}  # S3 bills a HEAD as a GET
# The kinds a price table must price: every request kind not billed as another.
PRICED_KINDS = tuple(k for k in REQUEST_KINDS if k not in BILLED_AS)


@dataclass(frozen=True, kw_only=True)
class Prices:
    usd_per_gb_second: float
    usd_per_invocation: float
    usd_per_request: dict[str, float]  # by kind: every PRICED_KIND, HEAD when the table has it
    arch: str
    source: str

    def request_usd(self, kind: str) -> float:
        if kind not in self.usd_per_request:  # a HEAD is a GET, unless the table says otherwise
            kind = BILLED_AS.get(kind, kind)
        return self.usd_per_request[kind]

    def function_cost(self, gb_s: float, invocations: int) -> float:
        """Dollars for functions billed ``gb_s`` GB-seconds over ``invocations`` invocations."""
        return gb_s * self.usd_per_gb_second + invocations * self.usd_per_invocation

    def storage_cost(self, requests: dict[str, int]) -> float:
        """Dollars for store requests counted by kind (PUT, GET, LIST, DELETE, HEAD)."""
        return sum(n * self.request_usd(kind) for kind, n in requests.items())


def _price(value: Any, field: str) -> float:
    return finite_number(value, field, minimum=0, unit="USD")


def prices_from_dict(d: Any, arch: str = "x86", where: str = "prices") -> Prices:
    try:
        per_gb_s = d["function"]["usd_per_gb_second"]
        per_million = d["function"]["usd_per_million_requests"]
        per_1000 = d["store"]["usd_per_1000_requests"]
    except (KeyError, TypeError) as e:
        raise InvalidInput(
            where,
            f"missing {e}",
            "see fasdl/presets/aws-prices.json for the shape: function.usd_per_gb_second.{arch}, "
            "function.usd_per_million_requests, store.usd_per_1000_requests.{PUT,GET,LIST,DELETE}",
        ) from e
    if not isinstance(per_gb_s, dict) or arch not in per_gb_s:
        known = ", ".join(per_gb_s) if isinstance(per_gb_s, dict) else "none"
        raise InvalidInput(
            "arch", f"{where} has no GB-second price for {arch!r}", f"architectures in it: {known}"
        )
    if not isinstance(per_1000, dict):
        raise InvalidInput(
            f"{where}: store.usd_per_1000_requests", "must map request kinds to prices"
        )
    missing = [k for k in PRICED_KINDS if k not in per_1000]
    if missing:
        raise InvalidInput(
            f"{where}: store.usd_per_1000_requests",
            f"no price for {', '.join(missing)}",
            "give 0 for a free kind",
        )
    return Prices(
        usd_per_gb_second=_price(per_gb_s[arch], f"{where}: function.usd_per_gb_second.{arch}"),
        usd_per_invocation=_price(per_million, f"{where}: function.usd_per_million_requests") / 1e6,
        usd_per_request={
            k: _price(per_1000[k], f"{where}: store.usd_per_1000_requests.{k}") / 1000
            for k in REQUEST_KINDS
            if k in per_1000
        },
        arch=arch,
        source=str(d.get("source", where)),
    )


def load_prices(spec: str | Path = "aws", arch: str = "x86") -> Prices:
    """A preset name (``aws``) or the path of a JSON price table."""
    if str(spec) in PRESETS:
        text = resources.files("fasdl.presets").joinpath(PRESETS[str(spec)]).read_text()
        where = f"preset:{spec}"
    else:
        path = Path(spec)
        if not path.is_file():
            raise InvalidInput(
                "prices",
                f"no file {str(path)!r}",
                f"give a JSON price table or a preset: {', '.join(PRESETS)}",
            )
        text = path.read_text()
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput("prices", f"{where} is not valid JSON: {e}") from e
    return prices_from_dict(data, arch=arch, where=where)

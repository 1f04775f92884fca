"""The store's transfer profile: how long a function takes to put and get objects of each size.

For each memory size one function (``transfer_handler``, reached through the ``profile``
handler with ``kind: transfer``) puts and gets objects of several sizes to and from the store,
a few times each, and reports the median times. The rows are in the reference format of the AWS
table (``memory_mb,object_mb,upload_s,download_s,samples``), which ``fasdl fit --transfer``
fits. The function imports no numpy or torch, so it runs at 128 MB with objects up to ~64 MB.
"""

from __future__ import annotations

import random
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasdl.errors import CorruptObject, FasdlError, InvalidInput
from fasdl.platform.base import Platform, State
from fasdl.platform.limits import check_memory_mb
from fasdl.profiler.handler import HANDLER
from fasdl.store import ObjectStore
from fasdl.validate import positive_number, whole_number

BYTES_PER_MB = 1_000_000  # decimal MB, as model_size_mb
DEFAULT_SIZES_MB = (1.0, 4.0, 16.0, 64.0)
DEFAULT_REPEATS = 3
MIN_SIZES = 3  # `fasdl fit --transfer` needs three sizes per memory size
WAIT_SLACK_S = 60.0  # beyond the function's timeout, for process start
TRANSFER_PREFIX = "profile"  # the store prefix of the objects a transfer profile puts


def transfer_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``event``: store, prefix, sizes_mb, repeats. Puts then gets each size ``repeats`` times.

    Each object is random bytes (nothing compresses it on the way) and is deleted after use.
    Only one object is held at a time, so the function needs about the largest size plus the
    interpreter.
    """
    from fasdl.store import open_store

    store = open_store(event["store"])
    prefix = str(event["prefix"]).strip("/")
    repeats = int(event["repeats"])
    rng = random.Random(context.aws_request_id)
    rows = []
    for size_mb in event["sizes_mb"]:
        key = f"{prefix}/{context.aws_request_id}/{size_mb:g}MB"
        up, down = [], []
        for _ in range(repeats):
            data = rng.randbytes(int(size_mb * BYTES_PER_MB))
            t0 = time.perf_counter()
            store.put(key, data)
            up.append(time.perf_counter() - t0)
            del data
            t0 = time.perf_counter()
            got = store.get(key)
            down.append(time.perf_counter() - t0)
            if len(got) != int(size_mb * BYTES_PER_MB):
                raise CorruptObject(key, f"got {len(got)} bytes back for a {size_mb:g} MB object")
            del got
        store.delete(key)
        rows.append(
            {
                "object_mb": float(size_mb),
                "upload_s": statistics.median(up),
                "download_s": statistics.median(down),
                "samples": repeats,
                "upload_samples_s": up,
                "download_samples_s": down,
            }
        )
    return {"rows": rows}


@dataclass(frozen=True)
class TransferOutcome:
    """One memory size: its rows (empty if the function did not succeed) and what went wrong."""

    memory_mb: int
    state: str
    rows: tuple[dict[str, float], ...]
    billed_ms: int
    peak_memory_mb: float
    error: str | None = None


def check_sizes_mb(sizes_mb: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    sizes = tuple(sizes_mb)
    for s in sizes:
        positive_number(s, "sizes", unit="MB", fix="e.g. --sizes 1,4,16,64")
        if s * BYTES_PER_MB < 1:
            raise InvalidInput("sizes", f"{s!r} MB is less than one byte")
    if len(set(sizes)) < MIN_SIZES:
        raise InvalidInput(
            "sizes",
            f"{len(set(sizes))} distinct object size(s); the transfer fit needs at least {MIN_SIZES}",
            "e.g. --sizes 1,4,16,64",
        )
    return tuple(sorted(set(sizes)))


def check_repeats(repeats: int) -> int:
    return whole_number(repeats, "storage_repeats", minimum=1)


def run_transfer_profile(
    platform: Platform,
    store: ObjectStore,
    *,
    memory_mb: tuple[int, ...],
    sizes_mb: tuple[float, ...] = DEFAULT_SIZES_MB,
    repeats: int = DEFAULT_REPEATS,
    prefix: str,
    timeout_s: float = 900.0,
    on_result: Callable[[TransferOutcome], None] | None = None,
) -> list[TransferOutcome]:
    """One function per memory size (ascending), one at a time; returns each size's outcome.

    A memory size whose function fails (or runs out of memory) has no rows and an error; the
    objects under ``prefix`` are deleted at the end whatever happened.
    """
    memory_mb = tuple(sorted({check_memory_mb(m) for m in memory_mb}))
    sizes_mb = check_sizes_mb(sizes_mb)
    repeats = check_repeats(repeats)
    outcomes = []
    try:
        for m in memory_mb:
            inv = platform.invoke(
                HANDLER,
                {
                    "kind": "transfer",
                    "store": store.url,
                    "prefix": prefix,
                    "sizes_mb": list(sizes_mb),
                    "repeats": repeats,
                },
                memory_mb=m,
                timeout_s=timeout_s,
            )
            inv.wait(timeout_s + WAIT_SLACK_S)
            rows: tuple[dict[str, float], ...] = ()
            if inv.state is State.SUCCEEDED:
                rows = tuple({"memory_mb": m, **r} for r in inv.result_value["rows"])
            outcome = TransferOutcome(
                memory_mb=m,
                state=inv.state.value,
                rows=rows,
                billed_ms=inv.billed_ms,
                peak_memory_mb=inv.peak_memory_mb,
                error=None if inv.state is State.SUCCEEDED else (inv.error or inv.state.value),
            )
            outcomes.append(outcome)
            if on_result is not None:
                on_result(outcome)
    finally:
        leftovers = store.list(prefix.strip("/") + "/")
        if leftovers:
            store.delete(leftovers)
    return outcomes


def check_transfer_out(path: str | Path) -> Path:
    """The transfer CSV's path, once its directory is known to exist."""
    out = Path(path)
    if not out.resolve().parent.is_dir():
        raise InvalidInput(
            "storage_out", f"the directory of {str(out)!r} does not exist", "create it first"
        )
    return out


def profile_transfer(
    out: str | Path,
    *,
    store: str,
    memory_mb: tuple[int, ...],
    platform: str = "local",
    sizes_mb: tuple[float, ...] = DEFAULT_SIZES_MB,
    repeats: int = DEFAULT_REPEATS,
    timeout_s: float = 900.0,
    on_result: Callable[[TransferOutcome], None] | None = None,
) -> list[TransferOutcome]:
    """The store's transfer profile end to end, as ``fasdl profile --storage`` runs it.

    Opens the store (``store``, a URL) and the platform (``platform``, one function at a time),
    runs ``run_transfer_profile`` under a fresh prefix, and writes the rows of every memory size
    that succeeded to ``out`` in the reference CSV format. Returns every outcome, failed ones
    included (their ``error`` says why); raises ``FasdlError`` if no memory size was measured.
    """
    from fasdl.perf.transfer import write_transfer_csv
    from fasdl.platform.base import open_platform
    from fasdl.store import open_store

    out = check_transfer_out(out)
    sizes_mb = check_sizes_mb(sizes_mb)
    repeats = check_repeats(repeats)
    bucket = open_store(store)
    with open_platform(platform, concurrency=1) as plat:
        outcomes = run_transfer_profile(
            plat,
            bucket,
            memory_mb=memory_mb,
            sizes_mb=sizes_mb,
            repeats=repeats,
            prefix=f"{TRANSFER_PREFIX}/transfer-{secrets.token_hex(6)}",
            timeout_s=timeout_s,
            on_result=on_result,
        )
    rows = transfer_rows(outcomes)
    if not rows:
        raise FasdlError("the transfer profile measured nothing: every function failed")
    write_transfer_csv(rows, out)
    return outcomes


def transfer_rows(outcomes: list[TransferOutcome]) -> list[dict[str, float]]:
    """The rows for ``write_transfer_csv``: the reference columns only, by memory then size."""
    columns = ("memory_mb", "object_mb", "upload_s", "download_s", "samples")
    rows = [{c: _whole(r[c]) for c in columns} for o in outcomes for r in o.rows]
    return sorted(rows, key=lambda r: (r["memory_mb"], r["object_mb"]))


def _whole(x: float) -> float:
    """1.0 -> 1, so the CSV reads like the reference table."""
    return int(x) if float(x).is_integer() else x

"""Lambda's limits and its CPU allotment, as numbers every platform and the optimizer share."""

from __future__ import annotations

from typing import Any

from fasdl.errors import InvalidInput

MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 900
ASYNC_PAYLOAD_LIMIT_BYTES = 256 * 1024
SYNC_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
MB_PER_VCPU = 1769  # Lambda: 1,769 MB buys one vCPU; CPU is proportional to memory
MAX_VCPUS = 6


def vcpus_for_memory(memory_mb: Any) -> Any:
    """Lambda's CPU share: in proportion to memory, 1 vCPU at 1,769 MB, 6 at 10,240 MB.

    A number or a numpy array (for the optimizer); this module itself imports no numpy.
    """
    share = memory_mb / MB_PER_VCPU
    return share.clip(max=MAX_VCPUS) if hasattr(share, "clip") else min(MAX_VCPUS, share)


def check_memory_mb(memory_mb: object, field: str = "memory") -> int:
    if (
        isinstance(memory_mb, bool)
        or not isinstance(memory_mb, int | float)
        or memory_mb != int(memory_mb)
    ):
        raise InvalidInput(field, f"{memory_mb!r} is not a whole number of MB")
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise InvalidInput(
            field,
            f"{int(memory_mb)} MB is outside {MIN_MEMORY_MB}–{MAX_MEMORY_MB:,} MB",
            "choose a memory size Lambda allows",
        )
    return int(memory_mb)


def check_timeout_s(timeout_s: object, field: str = "timeout") -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise InvalidInput(field, f"{timeout_s!r} is not a number of seconds")
    if not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S:
        raise InvalidInput(
            field,
            f"{timeout_s} s is outside {MIN_TIMEOUT_S}–{MAX_TIMEOUT_S} s",
            "Lambda stops a function after at most 900 s",
        )
    return float(timeout_s)

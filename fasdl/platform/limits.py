"""Lambda's limits and its CPU allotment, as numbers every platform and the optimizer share."""

from __future__ import annotations

from typing import Any

from fasdl.validate import finite_number, whole_number

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


def check_memory_mb(memory_mb: object, field: str = "memory_mb") -> int:
    """A memory size Lambda allows, in whole MB (a whole float such as 1024.0 is accepted)."""
    return whole_number(
        memory_mb,
        field,
        minimum=MIN_MEMORY_MB,
        maximum=MAX_MEMORY_MB,
        unit="MB",
        whole_floats=True,
        fix="choose a memory size Lambda allows",
    )


def check_timeout_s(timeout_s: object, field: str = "timeout_s") -> float:
    """A function time limit Lambda allows, in seconds."""
    return finite_number(
        timeout_s,
        field,
        minimum=MIN_TIMEOUT_S,
        maximum=MAX_TIMEOUT_S,
        unit="s",
        fix="Lambda stops a function after at most 900 s",
    )

"""Function platforms: ``local`` (a process per invocation, Lambda-like limits) and ``inline``."""

from fasdl.platform.base import (
    HANDLERS,
    Context,
    Invocation,
    InvocationFailed,
    InvocationRecord,
    Platform,
    State,
    open_platform,
    register_handler,
)

__all__ = [
    "HANDLERS",
    "Context",
    "Invocation",
    "InvocationFailed",
    "InvocationRecord",
    "Platform",
    "State",
    "open_platform",
    "register_handler",
]

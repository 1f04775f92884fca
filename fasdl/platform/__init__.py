"""Function platforms: ``local`` (a process per invocation, Lambda-like limits) and ``inline``."""

from fasdl.errors import InvocationFailed
from fasdl.platform.base import (
    HANDLERS,
    Context,
    Handler,
    Invocation,
    InvocationRecord,
    Platform,
    State,
    open_platform,
    register_handler,
)

__all__ = [
    "HANDLERS",
    "Context",
    "Handler",
    "Invocation",
    "InvocationFailed",
    "InvocationRecord",
    "Platform",
    "State",
    "open_platform",
    "register_handler",
]

"""Function platforms: ``local`` (a process per invocation, Lambda-like limits), ``inline`` and
``lithops`` (Lithops' backends: real clouds, or localhost; needs the lithops extra)."""

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

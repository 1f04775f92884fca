"""The exception hierarchy. User mistakes are ``ValueError``s; every store raises ``ObjectNotFound``."""

from __future__ import annotations


class FasdlError(Exception):
    """Base of fasdl's own runtime errors (not of user mistakes, which are ValueErrors)."""


class InvalidInput(ValueError):
    """A user mistake: names the field and the fix. The CLI turns it into exit code 2."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class ObjectNotFound(FileNotFoundError):
    """The key does not exist. Raised by every store, chained from the backend's own error."""

    def __init__(self, key: str, where: str = "") -> None:
        self.key = key
        super().__init__(f"no object {key!r}" + (f" in {where}" if where else ""))


class StoreError(FasdlError):
    """The store could not be used: missing bucket, unreachable endpoint, failed request."""


class WaitTimeout(FasdlError, TimeoutError):
    """A wait for a key passed its deadline. Says what it was waiting for."""


class CommunicationTimeout(WaitTimeout):
    """A worker gave up waiting for a peer's piece: names the worker, iteration and chunk."""


class PayloadTooLarge(InvalidInput):
    """An invocation payload over the platform's limit."""


class PlanInfeasible(FasdlError):
    """No configuration meets the deadline (or the budget)."""

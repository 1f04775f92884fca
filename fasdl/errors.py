"""Every exception fasdl raises on purpose, in one place (the bottom layer: it imports nothing).

Two families:

- ``InvalidInput`` (a ``ValueError``): a user mistake. It names the field and the fix; the CLI
  turns it into exit code 2, naming the field as the user wrote it (a flag, a payload key).
- ``FasdlError``: a runtime failure (exit code 1): a store that cannot be reached, an object
  that cannot be decoded, a function that failed, a job that stopped. A plain ``ValueError``
  raised anywhere else is a fault of the program, never read as the user's mistake.

Every store raises ``ObjectNotFound`` for a missing key.
"""

from __future__ import annotations

from typing import Any, Protocol


class FasdlError(Exception):
    """Base of fasdl's own runtime errors (not of user mistakes, which are ``InvalidInput``)."""


class InvalidInput(ValueError):
    """A user mistake: names the field and the fix. The CLI turns it into exit code 2.

    ``field`` is the package's own name for the value (``num_aggregators``); ``shown_as`` is how
    the message names it, by default the same. The layer that knows how the user wrote the
    value (the CLI: ``-K/--aggregators``; a payload: ``pattern_k``) renames it with
    ``named_as``, so the user reads the name they typed.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        self.shown_as = field
        super().__init__(self._message())

    def _message(self) -> str:
        msg = f"{self.shown_as}: {self.problem}"
        if self.fix:
            msg += f" ({self.fix})"
        return msg

    def named_as(self, name: str) -> InvalidInput:
        """This error, naming the field ``name`` (how the user wrote it); returns ``self``."""
        self.shown_as = name
        self.args = (self._message(),)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (across processes) with its fields
        return (
            _rebuild_invalid_input,
            (type(self), self.field, self.problem, self.fix, self.shown_as),
        )


def _rebuild_invalid_input(
    cls: type[InvalidInput], field: str, problem: str, fix: str, shown_as: str
) -> InvalidInput:
    e = cls.__new__(cls)
    InvalidInput.__init__(e, field, problem, fix)
    return e.named_as(shown_as)


class PayloadTooLarge(InvalidInput):
    """An invocation payload over the platform's limit."""


class OverlappingPrefixes(InvalidInput):
    """Two of a job's store prefixes overlap. ``field`` is one, ``other_field`` the other: the
    layer that knows which one the user gave names that one (the message reads either way)."""

    def __init__(self, field: str, other_field: str, problem: str, fix: str = "") -> None:
        super().__init__(field, problem, fix)
        self.other_field = other_field

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.field, self.other_field, self.problem, self.fix)
        return (_rebuild_overlapping_prefixes, (*args, self.shown_as))


def _rebuild_overlapping_prefixes(
    field: str, other_field: str, problem: str, fix: str, shown_as: str
) -> OverlappingPrefixes:
    e = OverlappingPrefixes(field, other_field, problem, fix)
    e.named_as(shown_as)
    return e


# -- stores -------------------------------------------------------------------------------------
class ObjectNotFound(FileNotFoundError):
    """The key does not exist. Raised by every store, chained from the backend's own error."""

    def __init__(self, key: str, where: str = "") -> None:
        self.key = key
        super().__init__(f"no object {key!r}" + (f" in {where}" if where else ""))


class StoreError(FasdlError):
    """The store could not be used: missing bucket, unreachable endpoint, failed request."""


class TransientStoreError(StoreError):
    """One request failed in a way that may pass: a refused or reset connection, a timeout, a 5xx,
    S3's SlowDown. Raised by a backend's primitive for a single attempt; the store's public
    methods retry it, and waits read it as "not there yet"."""


class StoreUnavailable(StoreError):
    """The store kept failing transiently for the whole retry budget: names the operation, the
    key, how long and how many times it was tried, and the last error."""

    def __init__(
        self, op: str, key: str, where: str, tried_s: float, attempts: int, last_error: str
    ) -> None:
        self.op, self.key, self.where = op, key, where
        self.tried_s, self.attempts, self.last_error = tried_s, attempts, last_error
        super().__init__(
            f"{op} {key!r} failed on {where}: the store was unavailable for {tried_s:.1f}s "
            f"({attempts} attempts; the retry budget is set by FASDL_STORE_RETRY_S or ?retry_s=); "
            f"last error: {last_error}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.op, self.key, self.where, self.tried_s, self.attempts, self.last_error)
        return (type(self), args)


class CorruptObject(StoreError, ValueError):
    """An object exists but cannot be decoded: a truncated checkpoint, bad JSON, a bad dataset
    archive. Names the key (when known) and what is wrong with it."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(
            f"object {key!r} is corrupt: {problem}" if key else f"corrupt object: {problem}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.problem))


class WaitTimeout(FasdlError, TimeoutError):
    """A wait for a key passed its deadline. Says what it was waiting for."""


class CommunicationTimeout(WaitTimeout):
    """A worker gave up waiting for a peer's piece: names the worker, iteration and chunk."""


class WireRangeError(FasdlError):
    """A value the wire format cannot carry: fp16 overflows beyond ±65504, int8 cannot scale an
    infinity or a NaN (a model that diverged)."""


# -- functions and jobs -------------------------------------------------------------------------
class _FailedInvocation(Protocol):
    request_id: str
    handler: str
    error: str | None

    @property
    def state(self) -> Any: ...


class InvocationFailed(FasdlError):
    """A function invocation did not succeed; ``invocation`` is the platform's Invocation."""

    def __init__(self, inv: _FailedInvocation) -> None:
        self.invocation = inv
        state = getattr(inv.state, "value", inv.state)
        msg = f"invocation {inv.request_id} of {inv.handler!r} {state}"
        if inv.error:
            msg += f": {inv.error}"
        super().__init__(msg)


class JobFailed(FasdlError):
    """A training job stopped: says which worker, in which round, and why."""


class RoundFailed(JobFailed):
    """One attempt at a round failed (a worker crashed, ran out of memory or time, or the round
    missed its deadline); the coordinator may retry the round from the last checkpoint set.
    ``worker`` is the failed worker (None: the round as a whole), ``reached`` the last iteration
    seen (for the iterations lost)."""

    def __init__(self, message: str, *, worker: int | None, reached: int = 0) -> None:
        super().__init__(message)
        self.worker = worker
        self.reached = reached


class PlanInfeasible(FasdlError):
    """No configuration meets the deadline (or the budget)."""


class NoPlan(PlanInfeasible):
    """Nothing meets the deadline (or the budget). Says what the best plan would reach."""

    def __init__(
        self,
        message: str,
        *,
        fastest_time_s: float | None = None,
        cheapest_cost_usd: float | None = None,
    ) -> None:
        super().__init__(message)
        self.fastest_time_s = fastest_time_s
        self.cheapest_cost_usd = cheapest_cost_usd


class SeaweedError(FasdlError):
    """SeaweedFS (the test S3 server) could not be found or started; the message carries weed's
    log tail."""


class BrowserError(FasdlError):
    """Headless Chromium (the report tests' browser) could not be found, started or answered."""

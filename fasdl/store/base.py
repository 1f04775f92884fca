"""The one object-store interface. Backends translate five primitives; everything else lives here.

Backends implement ``_put`` (atomic), ``_get``, ``_exists``, ``_delete`` and ``_list``; this base
validates keys, counts requests the way S3 would bill them, retries transient failures within a
time budget, waits for keys with a deadline, and scopes a store to a prefix. The K-Reduce
collective is written once against this class.

A primitive makes one attempt. When it fails in a way that may pass (a refused or reset
connection, a timeout, a 5xx, S3's SlowDown) it raises ``TransientStoreError``; the public
method then tries again with exponential backoff and full jitter until the retry budget (60 s,
``FASDL_STORE_RETRY_S``) is spent, and raises ``StoreUnavailable`` naming the operation, the key
and how long it tried. ``ObjectNotFound`` and every other error are raised at once. Waits read a
transient failure as "not there yet" and keep polling until their own deadline.
"""

from __future__ import annotations

import builtins
import collections
import logging
import math
import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from fasdl.errors import (
    InvalidInput,
    ObjectNotFound,
    StoreUnavailable,
    TransientStoreError,
    WaitTimeout,
)
from fasdl.store.arrivals import Arrival
from fasdl.validate import finite_number

log = logging.getLogger(__name__)

REQUEST_KINDS = ("PUT", "GET", "LIST", "DELETE", "HEAD")
S3_PAGE = 1000  # keys per LIST page and per multi-object DELETE, as on S3

RETRY_ENV = "FASDL_STORE_RETRY_S"
DEFAULT_RETRY_S = 60.0  # a store may be unavailable this long before a call fails
BACKOFF_BASE_S = 0.05  # the first retry waits up to this long ...
BACKOFF_CAP_S = 2.0  # ... each one up to twice as long, never more than this
WAIT_UNAVAILABLE_POLL_S = 0.5  # a wait polls a store that is down about this often (random)

_T = TypeVar("_T")


def retry_budget(value: object = None, field: str = "retry_s") -> float:
    """The retry budget in seconds: ``value`` if given, else ``$FASDL_STORE_RETRY_S``, else 60.

    0 means one attempt and no retry. Raises ``InvalidInput`` naming where the bad value came from.
    """
    if value is None:
        raw = os.environ.get(RETRY_ENV, "").strip()
        if not raw:
            return DEFAULT_RETRY_S
        value, field = raw, RETRY_ENV
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidInput(
                field, f"{value!r} is not a number of seconds", "e.g. 60; 0 turns retries off"
            ) from None
    return finite_number(
        value, field, minimum=0.0, unit="seconds", fix="e.g. 60; 0 turns retries off"
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by a time budget (and, optionally, attempts).

    The n-th retry (n = 1, 2, ...) sleeps a uniform random time in [0, min(cap, base * 2**(n-1))]:
    random so that many workers hit by one outage do not come back in lockstep. Attempts go on
    until ``budget_s`` has passed since the first one; the last sleep is cut to end at the budget,
    so the final attempt is made at the budget (an attempt in flight is never interrupted: it
    ends by its own connect/read timeout).
    """

    budget_s: float = DEFAULT_RETRY_S
    base_s: float = BACKOFF_BASE_S
    cap_s: float = BACKOFF_CAP_S
    max_attempts: int | None = None  # None: as many as fit in the budget

    def bound(self, retry: int) -> float:
        """The longest sleep before retry number ``retry`` (1-based)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(retry - 1, 60))

    def delay(self, retry: int) -> float:
        """The sleep before retry number ``retry``: full jitter below ``bound(retry)``."""
        return random.uniform(0.0, self.bound(retry))

    def call(self, op: str, key: str, where: str, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, again after each ``TransientStoreError`` until the budget is spent."""
        start = time.monotonic()
        failures = 0
        while True:
            try:
                result = attempt()
            except TransientStoreError as e:
                failures += 1
                elapsed = time.monotonic() - start
                remaining = self.budget_s - elapsed
                if remaining <= 0 or (
                    self.max_attempts is not None and failures >= self.max_attempts
                ):
                    raise StoreUnavailable(op, key, where, elapsed, failures, str(e)) from e
                pause = min(self.delay(failures), remaining)
                if failures == 1:
                    log.warning(
                        "store unavailable: %s; retrying %s %r for up to %.0fs",
                        e,
                        op,
                        key,
                        self.budget_s,
                    )
                else:
                    log.info("retry %d of %s %r after %.1fs: %s", failures, op, key, elapsed, e)
                time.sleep(pause)
                continue
            if failures:
                log.warning(
                    "store available again: %s %r succeeded after %d failed attempts in %.1fs",
                    op,
                    key,
                    failures,
                    time.monotonic() - start,
                )
            return result


def check_key(key: str) -> str:
    """Reject keys that could escape a store's root or a job's prefix."""
    if not isinstance(key, str) or not key:
        raise InvalidInput("key", f"{key!r} is not a non-empty string")
    if key.startswith("/") or key.startswith("\\"):
        raise InvalidInput(
            "key", f"{key!r} is an absolute path", "keys are relative to the store's root"
        )
    parts = key.replace("\\", "/").split("/")
    if any(p == ".." for p in parts):
        raise InvalidInput(
            "key", f"{key!r} contains '..'", "keys may not climb out of the store's root"
        )
    return key


def child_url(url: str, prefix: str) -> str:
    """``url`` with ``prefix`` appended to its path; the query (an S3 endpoint, say) is kept."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/" + quote(prefix.strip("/"))
    if not parts.netloc and not parts.path.startswith("/"):
        path = path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@dataclass(frozen=True)
class WaitResult:
    """What ``ObjectStore.wait_all_timed`` got: the blobs, and how each was found."""

    blobs: builtins.list[bytes]
    arrivals: builtins.list[Arrival]


class RequestCounter:
    """Requests by kind, shared by a store and its scoped views; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._counts[kind] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: self._counts.get(k, 0) for k in REQUEST_KINDS}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def __getstate__(self) -> dict[str, int]:
        return self.snapshot()

    def __setstate__(self, counts: dict[str, int]) -> None:
        self._lock = threading.Lock()
        self._counts = Counter(counts)


class ObjectStore(ABC):
    """put / get / exists / delete / list / wait over string keys and bytes values."""

    url: str

    def __init__(self, url: str, *, retry_s: float | None = None) -> None:
        self.url = url
        self.counter = RequestCounter()
        self.retry = RetryPolicy(retry_budget(retry_s))

    @property
    def where(self) -> str:
        """The store as error messages name it."""
        return self.url

    # -- backend primitives -------------------------------------------------------------------
    @abstractmethod
    def _put(self, key: str, data: bytes) -> None:
        """Write atomically: no reader ever sees a partly written object."""

    @abstractmethod
    def _get(self, key: str) -> bytes:
        """Read; raise ObjectNotFound (chained) when missing."""

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _delete(self, keys: list[str]) -> None:
        """Delete; keys that do not exist are ignored."""

    @abstractmethod
    def _list(self, prefix: str) -> list[str]:
        """Every key that starts with prefix (all pages)."""

    # -- public API ---------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"put({key!r}): data must be bytes, not {type(data).__name__}")
        self.counter.add("PUT")
        blob = bytes(data) if not isinstance(data, bytes) else data
        self.retry.call("PUT", key, self.where, lambda: self._put(key, blob))

    def get(self, key: str) -> bytes:
        check_key(key)
        self.counter.add("GET")
        return self.retry.call("GET", key, self.where, lambda: self._get(key))

    def exists(self, key: str) -> bool:
        check_key(key)
        self.counter.add("HEAD")
        return self.retry.call("HEAD", key, self.where, lambda: self._exists(key))

    def delete(self, keys: str | Iterable[str]) -> None:
        batch = [keys] if isinstance(keys, str) else list(keys)
        for k in batch:
            check_key(k)
        if not batch:
            return
        self.counter.add("DELETE", math.ceil(len(batch) / S3_PAGE))
        shown = batch[0] if len(batch) == 1 else f"{batch[0]} and {len(batch) - 1} more"
        self.retry.call("DELETE", shown, self.where, lambda: self._delete(batch))

    def list(self, prefix: str = "") -> list[str]:
        if prefix:
            check_key(prefix)
        keys = sorted(self.retry.call("LIST", prefix, self.where, lambda: self._list(prefix)))
        self.counter.add("LIST", max(1, math.ceil(len(keys) / S3_PAGE)))
        return keys

    def wait(
        self,
        key: str,
        timeout_s: float,
        *,
        what: str = "",
        poll_initial_s: float = 0.002,
        poll_max_s: float = 0.05,
    ) -> bytes:
        """Get ``key`` once it exists, polling that exact key with backoff until ``timeout_s``.

        ``what`` describes the awaited object for the error (e.g. "chunk 2 of iteration 7 from
        worker 3"), so a timeout says who is missing rather than just a key.
        """
        return self.wait_all(
            [key], timeout_s, what=[what], poll_initial_s=poll_initial_s, poll_max_s=poll_max_s
        )[0]

    def wait_all(
        self, keys: Sequence[str], timeout_s: float, **options: Any
    ) -> builtins.list[bytes]:
        """Get every key of ``keys`` once it exists (in the order given), or raise ``WaitTimeout``:
        the blobs of ``wait_all_timed``, which takes the same ``options``."""
        return self.wait_all_timed(keys, timeout_s, **options).blobs

    def wait_all_timed(
        self,
        keys: Sequence[str],
        timeout_s: float,
        *,
        what: Sequence[str] | None = None,
        pool: Executor | None = None,
        parallel: int = 4,
        expected_s: Sequence[float] | None = None,
        recheck_s: Sequence[float] | None = None,
        poll_initial_s: float = 0.002,
        poll_max_s: float = 0.05,
    ) -> WaitResult:
        """Get every key of ``keys`` once it exists, with when and after how many GETs each was
        found (``Arrival``), or raise ``WaitTimeout``.

        A key is *due* at once, or ``expected_s[i]`` seconds after the wait begins when given
        (``ArrivalModel``: when it landed in the waits before): no GET is sent for a key before
        it is due; if its first GET misses, it is due again at ``recheck_s[i]`` when that is
        later (where it was found before). A burst gets the due keys in batches on ``pool`` (if given): two at once,
        twice as many after a batch that found all its keys (up to ``parallel``), and it stops at
        the first batch that missed one. Then the due keys still missing are polled one at a
        time, in turn, with backoff; each arrival sets off a new burst. Without ``expected_s``
        an arrival also makes every missing key due, since objects of one step tend to land
        together. So waiting costs about one GET per poll interval plus a few per arrival, not
        one per missing key per interval, and it never lists. ``what`` describes each key for the
        error, so a timeout says who is missing.

        A transient failure of the store (a refused connection, a 5xx) is read as "not there
        yet": each poll is one attempt, and while the store is unavailable the polls back off to
        about one every 0.5 s, until the deadline; the ``WaitTimeout`` then says so. Any other
        error (access denied, a missing bucket) is raised at once.
        """
        start = time.monotonic()
        deadline = start + timeout_s
        n = len(keys)
        for k in keys:
            check_key(k)
        for hint in (expected_s, recheck_s):
            if hint is not None and len(hint) != n:
                raise ValueError(f"{len(hint)} arrival times for {n} keys")
        due = [start + max(0.0, e) for e in expected_s] if expected_s is not None else [start] * n
        found: dict[int, bytes] = {}
        found_s = [0.0] * n
        probes = [0] * n
        pending = collections.deque(range(n))  # missing keys, least recently probed first
        most = max(1, parallel) if pool is not None else 1
        # The last transient failure while polling, cleared by any answer (found or missing).
        unavailable: builtins.list[TransientStoreError | None] = [None]

        def probe(i: int) -> tuple[int, float, bytes | None]:
            """One GET, no retry: a transient failure is "not there yet" until the deadline."""
            sent = time.monotonic()
            self.counter.add("GET")
            try:
                blob = self._get(keys[i])
            except ObjectNotFound:
                blob = None
            except TransientStoreError as e:
                if unavailable[0] is None:
                    log.warning(
                        "store unavailable while waiting for %r: %s; polling on", keys[i], e
                    )
                unavailable[0] = e
                return i, sent, None
            if unavailable[0] is not None:
                unavailable[0] = None
                log.warning("store available again while waiting for %r", keys[i])
            return i, sent, blob

        def due_keys() -> builtins.list[int]:
            now = time.monotonic()
            return [i for i in pending if due[i] <= now]

        def burst(ready: builtins.list[int]) -> bool:
            """Probe each of ``ready`` at most once, a batch at a time, until a batch misses one;
            True if any was found."""
            width, got = min(2, most), False
            while ready:
                batch, ready = ready[:width], ready[width:]
                for i in batch:
                    pending.remove(i)
                results = (
                    pool.map(probe, batch)
                    if pool is not None and len(batch) > 1
                    else map(probe, batch)
                )
                missed = 0
                for i, sent, blob in results:
                    probes[i] += 1
                    if blob is None:
                        pending.append(i)  # to the back: probed just now
                        missed += 1
                        if probes[i] == 1 and recheck_s is not None:
                            due[i] = max(due[i], start + recheck_s[i])
                    else:
                        found[i], found_s[i], got = blob, sent - start, True
                if missed:
                    return got
                width = min(2 * width, most)
            return got

        burst(due_keys())
        delay = poll_initial_s
        failures = 0  # transient failures in a row: the store is down, poll it less often
        while pending:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                message = self._gave_up(timeout_s, keys, what, sorted(pending))
                if unavailable[0] is not None:
                    message += f"; the store was unavailable at the last poll: {unavailable[0]}"
                raise WaitTimeout(message)
            ready = due_keys()
            if not ready:  # nothing is due: sleep until the first key is
                time.sleep(min(min(due[i] for i in pending) - now, remaining))
                delay = poll_initial_s
                if burst(due_keys()):
                    delay = poll_initial_s
                continue
            if unavailable[0] is not None:
                failures += 1
                ceiling = poll_max_s * 2.0 ** min(failures, 30)
                pause = random.uniform(0.0, min(2 * WAIT_UNAVAILABLE_POLL_S, ceiling))
            else:
                failures = 0
                pause = delay
            time.sleep(min(pause, remaining))
            if not burst(due_keys()[:1]):
                delay = min(delay * 1.5, poll_max_s)
                continue
            if expected_s is None:
                now = time.monotonic()
                for i in pending:
                    due[i] = min(due[i], now)
            burst(due_keys())
            delay = poll_initial_s
        return WaitResult(
            [found[i] for i in range(n)],
            [Arrival(found_s[i], probes[i]) for i in range(n)],
        )

    def _gave_up(
        self,
        timeout_s: float,
        keys: Sequence[str],
        what: Sequence[str] | None,
        missing: builtins.list[int],
    ) -> str:
        def one(i: int) -> str:
            desc = f"{what[i]} " if what and what[i] else ""
            return f"{desc}(key {keys[i]!r})"

        shown = ", ".join(one(i) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        count = f"{len(missing)} of {len(keys)} objects: " if len(keys) > 1 else ""
        return f"gave up after {timeout_s:.1f}s waiting for {count}{shown}{more} in {self.url}"

    @property
    def requests(self) -> dict[str, int]:
        """Requests sent so far, by kind (PUT, GET, LIST, DELETE, HEAD)."""
        return self.counter.snapshot()

    def scoped(self, prefix: str) -> ObjectStore:
        """A view of this store under ``prefix``: keys are relative to it, requests counted here."""
        return PrefixedStore(self, prefix)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class PrefixedStore(ObjectStore):
    """Keys under a prefix of another store; a job's view, so it cannot touch another job's keys."""

    def __init__(self, inner: ObjectStore, prefix: str) -> None:
        check_key(prefix)  # before stripping: an absolute prefix is a mistake, not a spelling
        prefix = prefix.rstrip("/")
        super().__init__(child_url(inner.url, prefix))
        self.inner = inner
        self.prefix = prefix + "/"
        self.counter = inner.counter
        self.retry = inner.retry

    def _put(self, key: str, data: bytes) -> None:
        self.inner._put(self.prefix + key, data)

    def _get(self, key: str) -> bytes:
        return self.inner._get(self.prefix + key)

    def _exists(self, key: str) -> bool:
        return self.inner._exists(self.prefix + key)

    def _delete(self, keys: list[str]) -> None:
        self.inner._delete([self.prefix + k for k in keys])

    def _list(self, prefix: str) -> list[str]:
        n = len(self.prefix)
        return [k[n:] for k in self.inner._list(self.prefix + prefix)]

    def close(self) -> None:
        self.inner.close()

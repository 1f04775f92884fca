"""The one object-store interface. Backends translate five primitives; everything else lives here.

Backends implement ``_put`` (atomic), ``_get``, ``_exists``, ``_delete`` and ``_list``; this base
validates keys, counts requests the way S3 would bill them, waits for keys with a deadline, and
scopes a store to a prefix. The K-Reduce collective is written once against this class.
"""

from __future__ import annotations

import builtins
import collections
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from urllib.parse import quote, urlsplit, urlunsplit

from fasdl.errors import InvalidInput, ObjectNotFound, WaitTimeout

REQUEST_KINDS = ("PUT", "GET", "LIST", "DELETE", "HEAD")
S3_PAGE = 1000  # keys per LIST page and per multi-object DELETE, as on S3


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

    def __init__(self, url: str) -> None:
        self.url = url
        self.counter = RequestCounter()

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
        self._put(key, bytes(data) if not isinstance(data, bytes) else data)

    def get(self, key: str) -> bytes:
        check_key(key)
        self.counter.add("GET")
        return self._get(key)

    def exists(self, key: str) -> bool:
        check_key(key)
        self.counter.add("HEAD")
        return self._exists(key)

    def delete(self, keys: str | Iterable[str]) -> None:
        batch = [keys] if isinstance(keys, str) else list(keys)
        for k in batch:
            check_key(k)
        if not batch:
            return
        self.counter.add("DELETE", math.ceil(len(batch) / S3_PAGE))
        self._delete(batch)

    def list(self, prefix: str = "") -> list[str]:
        if prefix:
            check_key(prefix)
        keys = sorted(self._list(prefix))
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
        self,
        keys: Sequence[str],
        timeout_s: float,
        *,
        what: Sequence[str] | None = None,
        pool: Executor | None = None,
        parallel: int = 4,
        poll_initial_s: float = 0.002,
        poll_max_s: float = 0.05,
    ) -> builtins.list[bytes]:
        """Get every key of ``keys`` once it exists (in the order given), or raise ``WaitTimeout``.

        A burst first gets the keys already there in batches on ``pool`` (if given): two at once,
        twice as many after a batch that found all its keys (up to ``parallel``), and it stops at
        the first batch that missed one. Then the missing keys are polled one at a time, in turn,
        with backoff; each arrival sets off a new burst, since objects of one step tend to land
        together. So waiting costs about one GET per poll interval plus a few per arrival, not
        one per missing key per interval, and it never lists. ``what`` describes each key for the
        error, so a timeout says who is missing.
        """
        deadline = time.monotonic() + timeout_s
        found: dict[int, bytes] = {}
        pending = collections.deque(range(len(keys)))  # missing keys, least recently probed first
        most = max(1, parallel) if pool is not None else 1

        def probe(i: int) -> tuple[int, bytes | None]:
            try:
                return i, self.get(keys[i])
            except ObjectNotFound:
                return i, None

        def burst() -> None:
            """Probe each pending key at most once, a batch at a time, until a batch misses one."""
            left, width = len(pending), min(2, most)
            while left:
                batch = [pending.popleft() for _ in range(min(width, left))]
                left -= len(batch)
                results = (
                    pool.map(probe, batch)
                    if pool is not None and len(batch) > 1
                    else map(probe, batch)
                )
                missed = 0
                for i, blob in results:
                    if blob is None:
                        pending.append(i)  # to the back: probed just now
                        missed += 1
                    else:
                        found[i] = blob
                if missed:
                    return
                width = min(2 * width, most)

        burst()
        delay = poll_initial_s
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(self._gave_up(timeout_s, keys, what, sorted(pending)))
            time.sleep(min(delay, remaining))
            i, blob = probe(pending.popleft())
            if blob is None:
                pending.append(i)
                delay = min(delay * 1.5, poll_max_s)
                continue
            found[i] = blob
            burst()
            delay = poll_initial_s
        return [found[i] for i in range(len(keys))]

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

"""A view of a store whose objects carry the time their sender sent them (``arrivals.stamp``).

The K-Reduce collective talks through one, so that a receiver learns when its peers send
(``ArrivalModel``) and asks for an object when it is due instead of polling for it. Every object
put through the view starts with 8 bytes: the sender's clock when the PUT began. Objects are
read back through the same kind of view; ``sent_at`` tells when the last one read under a key
was sent.
"""

from __future__ import annotations

import threading

from fasdl.errors import CorruptObject
from fasdl.store.arrivals import stamp, unstamp
from fasdl.store.base import ObjectStore


class StampedStore(ObjectStore):
    """``inner``'s keys, with the send time in front of every object; requests counted there."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.counter = inner.counter
        self.retry = inner.retry
        self._lock = threading.Lock()
        self._sent: dict[str, float] = {}

    @property
    def where(self) -> str:
        return self.inner.where

    def sent_at(self, key: str) -> float | None:
        """When the sender of the object last read under ``key`` sent it (its clock)."""
        with self._lock:
            return self._sent.pop(key, None)

    def _put(self, key: str, data: bytes) -> None:
        self.inner._put(key, stamp(data))

    def _get(self, key: str) -> bytes:
        blob = self.inner._get(key)
        try:
            sent, data = unstamp(blob)
        except ValueError as e:
            raise CorruptObject(key, str(e)) from None
        with self._lock:
            self._sent[key] = sent
        return data

    def _exists(self, key: str) -> bool:
        return self.inner._exists(key)

    def _delete(self, keys: list[str]) -> None:
        self.inner._delete(keys)

    def _list(self, prefix: str) -> list[str]:
        return self.inner._list(prefix)

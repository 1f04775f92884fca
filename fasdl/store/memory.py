"""``memory://NAME``: a dict in this process. Same name, same objects; for tests and the inline platform."""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

from fasdl.errors import ObjectNotFound
from fasdl.store.base import ObjectStore

_BUCKETS: dict[str, dict[str, bytes]] = {}
_LOCK = threading.Lock()


class MemoryStore(ObjectStore):
    def __init__(self, name: str = "default", prefix: str = "") -> None:
        super().__init__(f"memory://{name}" + (f"/{prefix}" if prefix else ""))
        with _LOCK:
            self._objects = _BUCKETS.setdefault(name, {})
        self._base = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @staticmethod
    def discard(name: str) -> None:
        """Drop the named in-memory bucket and its objects (tests create one per test)."""
        with _LOCK:
            _BUCKETS.pop(name, None)

    @classmethod
    def from_url(cls, url: str, *, patient: bool = False) -> ObjectStore:
        parts = urlsplit(url)
        return cls(parts.netloc or "default", unquote(parts.path).strip("/"))

    def _put(self, key: str, data: bytes) -> None:
        with _LOCK:  # a dict assignment is atomic; the lock keeps list() consistent
            self._objects[self._base + key] = data

    def _get(self, key: str) -> bytes:
        try:
            return self._objects[self._base + key]
        except KeyError as e:
            raise ObjectNotFound(key, self.url) from e

    def _exists(self, key: str) -> bool:
        return self._base + key in self._objects

    def _delete(self, keys: list[str]) -> None:
        with _LOCK:
            for k in keys:
                self._objects.pop(self._base + k, None)

    def _list(self, prefix: str) -> list[str]:
        full = self._base + prefix
        n = len(self._base)
        with _LOCK:
            return [k[n:] for k in self._objects if k.startswith(full)]

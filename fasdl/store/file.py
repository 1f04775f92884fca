"""``file:///path``: a directory; the embedded default. Puts write a temporary file and rename it.

Nothing here is retried: an ``OSError`` other than a missing file (EIO from a failing disk or a
network file system, ENOSPC, EACCES) is raised at once, as it is. A local directory has no
transient outage worth waiting for, and a network file system retries (or hangs) in the kernel.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fasdl.errors import InvalidInput, ObjectNotFound
from fasdl.store.base import ObjectStore

_TMP_DIR = ".fasdl-tmp"  # same filesystem as the objects, so os.replace is atomic; never listed


class FileStore(ObjectStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        super().__init__(self.root.as_uri())

    @classmethod
    def from_url(cls, url: str, *, patient: bool = False) -> ObjectStore:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(
                "store",
                f"file URL {url!r} names host {parts.netloc!r}",
                "write file:///absolute/path (three slashes)",
            )
        path = unquote(parts.path)
        if not path:
            raise InvalidInput(
                "store", f"file URL {url!r} has no path", "write file:///absolute/path"
            )
        return cls(path)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if p != self.root and self.root not in p.parents:
            raise InvalidInput("key", f"{key!r} resolves outside the store's root {self.root}")
        return p

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp_dir = self.root / _TMP_DIR
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ObjectNotFound(key, self.url) from e

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _delete(self, keys: list[str]) -> None:
        for k in keys:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
                self._path(k).unlink()

    def _list(self, prefix: str) -> list[str]:
        # Walk only the deepest directory the prefix names, not the whole root.
        head, _, _ = prefix.rpartition("/")
        start = self.root / head if head else self.root
        if not start.is_dir():
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(start):
            # At any depth: a store opened at a subdirectory keeps its temporary files there.
            if _TMP_DIR in dirnames:
                dirnames.remove(_TMP_DIR)
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    out.append(key)
        return out

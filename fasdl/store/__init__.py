"""Object stores, chosen by URL: ``memory://``, ``file:///path``, ``s3://bucket/prefix``.

The registry maps a scheme to the module that implements it, imported on first use, so that
``boto3`` is only imported by those who use S3 (fsspec's ``registry``, lazily).
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from fasdl.errors import InvalidInput, ObjectNotFound, StoreError
from fasdl.store.base import REQUEST_KINDS, ObjectStore

__all__ = ["REQUEST_KINDS", "SCHEMES", "ObjectNotFound", "ObjectStore", "StoreError", "open_store"]

# scheme -> ("module:Class", install hint)
SCHEMES: dict[str, tuple[str, str]] = {
    "memory": ("fasdl.store.memory:MemoryStore", ""),
    "file": ("fasdl.store.file:FileStore", ""),
    "s3": ("fasdl.store.s3:S3Store", "pip install boto3"),
}


def open_store(url: str, *, patient: bool = False) -> ObjectStore:
    """Open the store that ``url`` names. Bad URLs raise ``InvalidInput`` before anything is written.

    ``patient``: the store is known to exist (a worker opening the store its coordinator has
    opened), so an S3 server that is down at the check is retried for the retry budget
    (``StoreUnavailable`` after it) rather than reported at once; a missing bucket or denied
    access still fail at once. Other stores have nothing to check.
    """
    if not isinstance(url, str) or not url:
        raise InvalidInput(
            "store", "empty store URL", "give memory://NAME, file:///PATH or s3://BUCKET/PREFIX"
        )
    if "://" not in url:
        raise InvalidInput(
            "store",
            f"{url!r} is not a URL",
            f"known schemes: {', '.join(s + '://' for s in SCHEMES)}",
        )
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise InvalidInput(
            "store",
            f"unknown URL scheme {scheme!r} in {url!r}",
            f"known schemes: {', '.join(s + '://' for s in SCHEMES)}",
        )
    target, hint = SCHEMES[scheme]
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise StoreError(f"the {scheme}:// store needs a package that is missing: {hint}") from e
    cls = getattr(module, cls_name)
    store: ObjectStore = cls.from_url(url, patient=patient)
    return store

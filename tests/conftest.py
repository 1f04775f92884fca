"""Shared fixtures: a real SeaweedFS for the session, and stores of every kind.

``store`` / ``store_url`` run a test once per backend (memory, file, s3); ``shared_store_url``
only over the backends that other processes can open (file, s3). The S3 cases use one bucket
for the whole session and a fresh prefix per test: SeaweedFS spends volumes on every bucket.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from fasdl.store import ObjectStore, open_store
from fasdl.store.memory import MemoryStore
from fasdl.testing import SeaweedServer

TEST_BUCKET = "fasdl-tests"

STORE_KINDS = ["memory", "file", pytest.param("s3", marks=pytest.mark.s3)]
SHARED_STORE_KINDS = ["file", pytest.param("s3", marks=pytest.mark.s3)]


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """A real SeaweedFS S3 server on free 127.0.0.1 ports; fails loudly if `weed` is missing."""
    with SeaweedServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_bucket(seaweed: SeaweedServer) -> str:
    return seaweed.make_bucket(TEST_BUCKET)


@pytest.fixture
def s3_url(seaweed: SeaweedServer, s3_bucket: str) -> str:
    """An s3:// URL under a prefix no other test uses."""
    return seaweed.url(s3_bucket, f"t-{uuid.uuid4().hex[:12]}")


def _url_for(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    if kind == "memory":
        name = f"t-{uuid.uuid4().hex[:12]}"
        request.addfinalizer(lambda: MemoryStore.discard(name))
        return f"memory://{name}"
    if kind == "file":
        return tmp_path_factory.mktemp("store").as_uri()
    if kind == "s3":
        return str(request.getfixturevalue("s3_url"))
    raise AssertionError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL to an empty store, once per kind: memory://, file://, s3:// (SeaweedFS)."""
    return _url_for(request.param, request, tmp_path_factory)


@pytest.fixture(params=SHARED_STORE_KINDS)
def shared_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Like ``store_url`` but only stores that other processes can open: file://, s3://."""
    return _url_for(request.param, request, tmp_path_factory)


@pytest.fixture
def store(store_url: str) -> Iterator[ObjectStore]:
    """An empty store of each kind, opened from ``store_url``."""
    s = open_store(store_url)
    yield s
    s.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI (``CI`` set, as `.ci/run` is run) a skipped test fails: every test must run there."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, where every test must run: {reason}"

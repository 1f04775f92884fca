"""Store URLs: every mistake gets a clear error before anything is written; no server needed.

(A missing bucket needs a real server: see tests/integration/test_store_contract.py.)
"""

from __future__ import annotations

import pickle
import socket
import time
from collections.abc import Iterator

import pytest

from fasdl.errors import InvalidInput
from fasdl.store import SCHEMES, open_store
from fasdl.store.base import child_url
from fasdl.store.file import FileStore
from fasdl.store.memory import MemoryStore
from fasdl.store.s3 import S3Store, parse_s3_url

ENDPOINT_VARS = ("FASDL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@pytest.fixture(autouse=True)
def _no_endpoint_or_region_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*ENDPOINT_VARS, "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-test")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("url", ["ftp://host/x", "redis2://localhost:6379", "S4://bucket"])
def test_unknown_scheme_lists_the_known_ones(url: str) -> None:
    with pytest.raises(InvalidInput, match="unknown URL scheme") as info:
        open_store(url)
    for scheme in SCHEMES:
        assert f"{scheme}://" in str(info.value)


@pytest.mark.parametrize("url", ["", "just/a/path", "/abs/path"])
def test_not_a_url(url: str) -> None:
    with pytest.raises(InvalidInput, match="store"):
        open_store(url)


def test_file_url_without_a_path() -> None:
    with pytest.raises(InvalidInput, match="has no path"):
        open_store("file://")


def test_file_url_with_a_host_says_three_slashes() -> None:
    with pytest.raises(InvalidInput, match="three slashes"):
        open_store("file://tmp/x")


def test_file_url_opens_a_directory(tmp_path) -> None:
    store = open_store((tmp_path / "objs").as_uri())
    assert isinstance(store, FileStore)
    store.put("a/b", b"1")
    assert (tmp_path / "objs" / "a" / "b").read_bytes() == b"1"


def test_memory_url_names_a_shared_bucket() -> None:
    a = open_store("memory://unit-urls")
    b = open_store("memory://unit-urls/sub")
    try:
        b.put("k", b"v")
        assert a.get("sub/k") == b"v"
    finally:
        MemoryStore.discard("unit-urls")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://Upper_Case", "not a valid S3 bucket name"),
        ("s3://ab", "not a valid S3 bucket name"),
        ("s3://bucket?endpoint=http://x", "unknown option 'endpoint'.*known options: endpoint_url"),
        ("s3://bucket?region=", "needs exactly one value"),
        ("s3://bucket?endpoint_url=ftp://host", "not an http"),
        ("s3://bucket?endpoint_url=http://host:notaport", "bad port"),
        ("s3://bucket?addressing_style=sideways", "addressing_style"),
    ],
)
def test_bad_s3_urls(url: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        open_store(url)


def test_parse_s3_url() -> None:
    opts = parse_s3_url(
        "s3://my-bucket/jobs/a%20b/?endpoint_url=http://127.0.0.1:8333&region=eu-west-1"
    )
    assert opts == {
        "bucket": "my-bucket",
        "prefix": "jobs/a b",
        "endpoint_url": "http://127.0.0.1:8333",
        "region": "eu-west-1",
    }


def test_unreachable_endpoint_fails_fast_naming_it(closed_port: int) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    start = time.monotonic()
    with pytest.raises(InvalidInput, match=f"cannot reach the S3 endpoint {endpoint}"):
        open_store(f"s3://some-bucket/p?endpoint_url={endpoint}")
    assert time.monotonic() - start < 10


def test_endpoint_from_the_environment_is_used_and_named(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("FASDL_S3_ENDPOINT", endpoint)  # ours wins over boto3's
    with pytest.raises(InvalidInput, match=endpoint):
        open_store("s3://some-bucket")


def test_bad_endpoint_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:8333")
    with pytest.raises(InvalidInput, match="AWS_ENDPOINT_URL='localhost:8333' is not an http"):
        open_store("s3://some-bucket")


def test_canonical_s3_url_reopens_the_same_store_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASDL_S3_ENDPOINT", "http://10.0.0.5:8333/")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    store = S3Store("my-bucket", "/jobs/7/", check=False)
    assert (
        store.url == "s3://my-bucket/jobs/7?endpoint_url=http://10.0.0.5:8333&region=eu-central-1"
    )
    opts = parse_s3_url(store.url)
    assert (opts["endpoint_url"], opts["region"], opts["prefix"]) == (
        "http://10.0.0.5:8333",
        "eu-central-1",
        "jobs/7",
    )
    assert (
        store.scoped("w3").url
        == "s3://my-bucket/jobs/7/w3?endpoint_url=http://10.0.0.5:8333&region=eu-central-1"
    )


def test_aws_without_endpoint_uses_virtual_addressing_and_a_default_region() -> None:
    store = S3Store("my-bucket", check=False)
    assert store.endpoint_url is None and store.region == "us-east-1"
    assert store.addressing_style == "auto"
    assert store.url == "s3://my-bucket?region=us-east-1"


def test_s3_store_pickles_without_its_client() -> None:
    store = S3Store("my-bucket", "p", endpoint_url="http://127.0.0.1:9", check=False)
    assert store.client is not None
    copy = pickle.loads(pickle.dumps(store))
    assert copy._client is None and copy.url == store.url
    assert copy.client is not None and copy._client is not None  # reopened on first use


@pytest.mark.parametrize(
    ("url", "prefix", "expected"),
    [
        ("memory://n", "job", "memory://n/job"),
        ("file:///tmp/x/", "job/1", "file:///tmp/x/job/1"),
        (
            "s3://b?endpoint_url=http://h:1&region=r",
            "job",
            "s3://b/job?endpoint_url=http://h:1&region=r",
        ),
    ],
)
def test_child_url_keeps_the_query(url: str, prefix: str, expected: str) -> None:
    assert child_url(url, prefix) == expected

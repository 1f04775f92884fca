"""The store contract, run once against every store: memory, a directory, a real SeaweedFS.

The S3-only tests at the end open the bucket through a real TCP proxy that resets connections,
to show that transient failures are retried rather than surfaced.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fasdl.errors import InvalidInput, ObjectNotFound, StoreError, WaitTimeout
from fasdl.store import ObjectStore, open_store
from fasdl.store.s3 import S3Store
from fasdl.testing import SeaweedServer

NO_REQUESTS = {"PUT": 0, "GET": 0, "LIST": 0, "DELETE": 0, "HEAD": 0}


def _await(condition, timeout_s: float = 30.0, what: str = "") -> None:
    """Poll an observable condition until it holds, with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


# -- put / get / exists ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [b"", b"hello", bytes(range(256)) * 4, os.urandom(1 << 20)],
    ids=["empty", "small", "all-bytes", "1MB-random"],
)
def test_put_get_round_trip(store: ObjectStore, data: bytes) -> None:
    store.put("dir/sub/obj.bin", data)
    assert store.get("dir/sub/obj.bin") == data
    assert store.exists("dir/sub/obj.bin")


def test_put_accepts_bytearray_and_memoryview_but_not_str(store: ObjectStore) -> None:
    store.put("a", bytearray(b"xy"))
    store.put("b", memoryview(b"zw"))
    assert (store.get("a"), store.get("b")) == (b"xy", b"zw")
    with pytest.raises(TypeError, match="bytes"):
        store.put("c", "text")  # type: ignore[arg-type]
    assert not store.exists("c")


def test_overwrite_replaces_the_whole_object(store: ObjectStore) -> None:
    store.put("k", b"a long first version")
    store.put("k", b"v2")
    assert store.get("k") == b"v2"
    assert store.list() == ["k"]


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("nope")
    store.put("yes", b"1")
    assert store.exists("yes")
    # a "directory" is not an object
    store.put("d/child", b"1")
    assert not store.exists("d")


def test_get_missing_raises_object_not_found_naming_the_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="missing/key") as info:
        store.get("missing/key")
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.key == "missing/key"
    assert info.value.__cause__ is not None, "chained from the backend's own error"


# -- wait ----------------------------------------------------------------------------------------
def test_wait_for_a_missing_key_times_out_naming_it(store: ObjectStore) -> None:
    store.exists("warm-up")  # the first request of a client opens its connection
    store.counter.reset()
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match="chunk 3 of worker 2") as info:
        store.wait("iter-7/chunk-3", timeout_s=0.5, what="chunk 3 of worker 2")
    elapsed = time.monotonic() - start
    assert "iter-7/chunk-3" in str(info.value)
    assert 0.5 <= elapsed < 10
    counts = store.requests
    assert counts["GET"] >= 2, "polls the exact key"
    assert counts["LIST"] == 0, "never lists while waiting"


def test_wait_returns_a_key_put_later_by_another_thread(store: ObjectStore) -> None:
    writer = open_store(store.url)  # another client of the same store, as another function would be

    def put_once_waiter_has_missed() -> None:
        _await(lambda: store.requests["GET"] >= 2, what="the waiter to poll twice")
        writer.put("late", b"finally")

    t = threading.Thread(target=put_once_waiter_has_missed)
    t.start()
    try:
        assert store.wait("late", timeout_s=60) == b"finally"
    finally:
        t.join(timeout=60)
        writer.close()
    assert store.requests["GET"] >= 3


def _max_polls(timeout_s: float, initial_s: float = 0.002, max_s: float = 0.05) -> int:
    """The most polls a waiter can send in ``timeout_s``: each follows a sleep of the backoff's delay."""
    polls, slept, delay = 0, 0.0, initial_s
    while slept < timeout_s:
        polls, slept, delay = polls + 1, slept + delay, min(delay * 1.5, max_s)
    return polls


def test_wait_all_polls_one_key_at_a_time_and_names_only_the_missing(store: ObjectStore) -> None:
    keys = [f"it-3/piece-{i}" for i in range(6)]
    store.put(keys[1], b"one")
    store.put(keys[4], b"four")
    store.exists("warm-up")
    store.counter.reset()
    with ThreadPoolExecutor(4) as pool, pytest.raises(WaitTimeout) as info:
        store.wait_all(keys, 0.5, what=[f"piece {i}" for i in range(6)], pool=pool)
    message = str(info.value)
    assert "4 of 6 objects" in message
    assert all(f"piece {i} " in message for i in (0, 2, 3, 5))
    assert "piece 1 " not in message and "piece 4 " not in message
    # one sweep of all six, then one key per poll: a waiter per key would send four times as many
    assert 6 < store.requests["GET"] <= 6 + _max_polls(0.5)
    assert store.requests["LIST"] == 0


def test_wait_all_returns_keys_in_order_as_others_put_them(store: ObjectStore) -> None:
    writer = open_store(store.url)
    keys = [f"gather/{i}" for i in range(5)]

    def put_in_reverse_while_polled() -> None:
        for i in reversed(range(5)):
            seen = store.requests["GET"]
            _await(lambda seen=seen: store.requests["GET"] > seen, what="the waiter to poll again")
            writer.put(keys[i], f"v{i}".encode())

    t = threading.Thread(target=put_in_reverse_while_polled)
    t.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            got = store.wait_all(keys, 60, pool=pool)
    finally:
        t.join(timeout=60)
        writer.close()
    assert got == [f"v{i}".encode() for i in range(5)]
    assert store.wait_all([], 1) == []


# -- delete / list -------------------------------------------------------------------------------
def test_delete_many_keys_including_missing_ones(store: ObjectStore) -> None:
    for i in range(5):
        store.put(f"d/{i}", b"x")
    store.put("keep", b"x")
    store.delete([f"d/{i}" for i in range(5)] + ["d/missing", "never/was"])
    assert store.list() == ["keep"]
    store.delete("keep")
    store.delete("keep")  # deleting twice is fine
    assert store.list() == []
    before = store.requests["DELETE"]
    store.delete([])
    assert store.requests["DELETE"] == before, "an empty delete sends nothing"


def test_list_by_prefix_past_one_page_then_delete_all(store: ObjectStore) -> None:
    keys = [f"many/{i:05d}" for i in range(1050)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), keys))
    store.put("manyx", b"sibling with the same leading characters")
    store.put("other/0", b"o")

    before = store.requests
    listed = store.list("many/")
    assert listed == keys
    assert store.requests["LIST"] - before["LIST"] == 2, "1,050 keys are two S3 pages"
    assert store.list("many/0001") == keys[10:20]
    assert store.list("many/01") == keys[1000:]
    assert store.list("many") == [*keys, "manyx"]
    assert len(store.list()) == 1052

    before = store.requests
    store.delete(listed)
    assert store.requests["DELETE"] - before["DELETE"] == 2, "multi-object deletes of 1,000 keys"
    assert store.list("many/") == []
    assert store.list() == ["manyx", "other/0"]


def test_list_of_an_unknown_prefix_is_empty(store: ObjectStore) -> None:
    store.put("a/b", b"1")
    assert store.list("zzz/") == []
    assert store.list("a/b") == ["a/b"]


# -- scoped views -------------------------------------------------------------------------------
def test_scoped_views_isolate_prefixes(store: ObjectStore) -> None:
    a, b, ab = store.scoped("job-a"), store.scoped("job-b"), store.scoped("job-ab")
    a.put("w0/grad", b"A")
    b.put("w0/grad", b"B")
    ab.put("w0/grad", b"AB")
    assert (a.get("w0/grad"), b.get("w0/grad"), ab.get("w0/grad")) == (b"A", b"B", b"AB")
    assert a.list() == ["w0/grad"]
    assert store.list("job-a/") == ["job-a/w0/grad"]
    a.delete(a.list())
    assert not a.exists("w0/grad")
    assert b.get("w0/grad") == b"B" and ab.get("w0/grad") == b"AB"
    with pytest.raises(ObjectNotFound):
        a.get("w0/grad")
    nested = b.scoped("iter-1")
    nested.put("x", b"n")
    assert b.list() == ["iter-1/x", "w0/grad"]


def test_a_scoped_view_reopens_from_its_url(store: ObjectStore) -> None:
    view = store.scoped("job-7")
    view.put("k", b"v")
    if not view.url.startswith("memory://"):
        again = open_store(view.url)
        assert again.get("k") == b"v" and again.list() == ["k"]
        again.close()


def test_scoped_views_count_into_the_parent(store: ObjectStore) -> None:
    view = store.scoped("job")
    view.put("k", b"v")
    view.get("k")
    assert store.requests["PUT"] == 1 and store.requests["GET"] == 1
    assert view.requests == store.requests


# -- request counting --------------------------------------------------------------------------
def test_requests_are_counted_by_kind(store: ObjectStore) -> None:
    assert store.requests == NO_REQUESTS
    store.put("a", b"1")
    store.put("b", b"2")
    store.get("a")
    with pytest.raises(ObjectNotFound):
        store.get("missing")
    store.exists("a")
    store.exists("missing")
    store.list()
    store.delete(["a", "b"])
    assert store.requests == {"PUT": 2, "GET": 2, "LIST": 1, "DELETE": 1, "HEAD": 2}
    store.counter.reset()
    assert store.requests == NO_REQUESTS


# -- atomicity ----------------------------------------------------------------------------------
def test_a_reader_never_sees_a_partial_object(store: ObjectStore) -> None:
    size = 4 << 20
    versions = 16
    store.put("big", bytes([0]) * size)
    reader_store = open_store(store.url) if not store.url.startswith("memory://") else store
    reads: list[int] = []
    bad: list[str] = []
    writer_done = threading.Event()

    def read_until_writer_is_done() -> None:
        while True:
            finished = writer_done.is_set()
            data = reader_store.get("big")
            first = data[:1]
            if len(data) != size or data.count(first) != size:
                bad.append(f"read {len(data)} bytes, first {first!r}")
            reads.append(data[0])
            if finished:
                return

    t = threading.Thread(target=read_until_writer_is_done)
    t.start()
    try:
        _await(lambda: len(reads) >= 1, what="the first read")
        for v in range(1, versions + 1):
            store.put("big", bytes([v]) * size)
    finally:
        writer_done.set()
        t.join(timeout=120)
    assert not bad, bad[:5]
    assert reads[-1] == versions
    assert len(reads) >= 2
    if reader_store is not store:
        reader_store.close()


# -- bad keys ----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs/path", "\\abs", "a/..", ""])
def test_bad_keys_are_rejected_before_any_request(store: ObjectStore, key: str) -> None:
    calls = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete([key]),
        lambda: store.delete(["fine", key]),
        lambda: store.wait(key, timeout_s=1),
        lambda: store.scoped(key),
    ]
    if key:
        calls.append(lambda: store.list(key))
    for call in calls:
        with pytest.raises(InvalidInput, match="key"):
            call()
    assert store.requests == NO_REQUESTS
    assert store.list() == []


def test_a_pickled_store_still_works(store: ObjectStore) -> None:
    store.put("k", b"v")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get("k") == b"v"
    copy.close()


# -- S3 only: opening, and transient failures through a faulty proxy ------------------------------
@pytest.mark.s3
def test_missing_bucket_fails_at_open_naming_bucket_and_endpoint(seaweed: SeaweedServer) -> None:
    start = time.monotonic()
    with pytest.raises(InvalidInput, match="bucket 'no-such-bucket-here' does not exist") as info:
        open_store(seaweed.url("no-such-bucket-here", "x"))
    assert seaweed.endpoint_url in str(info.value)
    assert time.monotonic() - start < 10


@pytest.mark.s3
def test_s3_url_carries_the_endpoint_so_other_processes_can_open_it(
    seaweed: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("FASDL_S3_ENDPOINT", seaweed.endpoint_url)
    store = open_store(f"s3://{s3_bucket}/from-env")
    store.put("k", b"v")
    monkeypatch.delenv("FASDL_S3_ENDPOINT")
    assert seaweed.endpoint_url in store.url
    assert open_store(store.url).get("k") == b"v"


@pytest.mark.s3
def test_s3_deleted_bucket_is_a_store_error(seaweed: SeaweedServer) -> None:
    bucket = seaweed.make_bucket("fasdl-doomed")
    store = open_store(seaweed.url(bucket))
    store.put("k", b"v")
    client = seaweed.client()
    client.delete_object(Bucket=bucket, Key="k")
    client.delete_bucket(Bucket=bucket)
    _await(
        lambda: bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]],
        what="bucket deletion",
    )
    with pytest.raises(StoreError, match="fasdl-doomed"):
        store.put("k2", b"v")


class FaultyProxy:
    """A TCP proxy to SeaweedFS that breaks chosen connections: a real network fault, not a mock.

    ``faults`` maps a connection number (0, 1, ...) to "reset" (close with RST as soon as the
    request arrives) or an int n (forward the response but cut it after n bytes).
    """

    def __init__(self, target_port: int, faults: dict[int, str | int]) -> None:
        self.target_port = target_port
        self.faults = faults
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closing = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(conn)
            fault = self.faults.get(self.connections)
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn, fault), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()

    def _serve(self, client: socket.socket, fault: str | int | None) -> None:
        if fault == "reset":
            client.recv(65536)
            self._reset(client)
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        self._sockets += [client, upstream]

        def pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
            sent = 0
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    if limit is not None and sent + len(chunk) >= limit:
                        # A clean close mid-body (an RST could discard the headers unread).
                        dst.sendall(chunk[: limit - sent])
                        dst.shutdown(socket.SHUT_RDWR)
                        upstream.close()
                        return
                    dst.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        limit = fault if isinstance(fault, int) else None
        up = threading.Thread(target=pump, args=(client, upstream, None), daemon=True)
        up.start()
        pump(upstream, client, limit)
        up.join(timeout=30)
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closing = True
        # Shut down rather than close: a close does not wake a thread blocked in accept/recv.
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(timeout=30)
        for t in self._threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "proxy threads left running"


@pytest.mark.s3
def test_s3_reset_connections_are_retried(seaweed: SeaweedServer, s3_bucket: str) -> None:
    proxy = FaultyProxy(int(seaweed.ports["s3.port"]), {0: "reset", 1: "reset", 3: "reset"})
    try:
        store = S3Store(
            s3_bucket,
            "faulty",
            endpoint_url=proxy.endpoint_url,
            check=False,
            max_pool_connections=1,
        )
        store.put("k", b"survives resets")
        assert store.get("k") == b"survives resets"
        assert proxy.connections >= 3, "the faults were hit"
        assert store.requests["PUT"] == 1, "retries are not billed requests of the caller"
        store.close()
    finally:
        proxy.close()


@pytest.mark.s3
def test_s3_get_whose_body_is_cut_is_sent_again(seaweed: SeaweedServer, s3_bucket: str) -> None:
    size = 256 << 10
    data = os.urandom(size)
    direct = open_store(seaweed.url(s3_bucket, "cut"))
    direct.put("k", data)
    proxy = FaultyProxy(
        int(seaweed.ports["s3.port"]), {0: 2048}
    )  # headers, then a part of the body
    try:
        store = S3Store(
            s3_bucket, "cut", endpoint_url=proxy.endpoint_url, check=False, max_pool_connections=1
        )
        assert store.get("k") == data
        assert proxy.connections >= 2
        store.close()
    finally:
        proxy.close()


@pytest.mark.s3
def test_s3_errors_left_after_retries_name_the_operation_and_key(
    seaweed: SeaweedServer, s3_bucket: str
) -> None:
    proxy = FaultyProxy(int(seaweed.ports["s3.port"]), dict.fromkeys(range(100), "reset"))
    try:
        store = S3Store(
            s3_bucket, "doomed", endpoint_url=proxy.endpoint_url, check=False, max_attempts=2
        )
        with pytest.raises(StoreError, match=r"PUT 'k' failed on s3://fasdl-tests/doomed/"):
            store.put("k", b"v")
        store.close()
    finally:
        proxy.close()

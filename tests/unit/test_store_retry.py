"""The store's retry policy: backoff with full jitter inside a time budget, never for 404 or 403.

The S3 cases run boto3 against a tiny S3 over real HTTP on 127.0.0.1 (objects in a dict) that
answers scripted failures first: 503 SlowDown, 500, reset connections, 404s, 403s. The policy
itself is also run against a fake clock, so its bounds are checked exactly.
"""

from __future__ import annotations

import pickle
import socket
import threading
import time
import types
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import pytest

from fasdl.errors import (
    InvalidInput,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
    TransientStoreError,
    WaitTimeout,
)
from fasdl.store import base, open_store
from fasdl.store.base import RETRY_ENV, RetryPolicy, retry_budget
from fasdl.store.s3 import S3Store, parse_s3_url

BUCKET = "fake-bucket"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


# -- a tiny S3 -----------------------------------------------------------------------------------
class FakeS3:
    """Path-style S3 on 127.0.0.1: PUT/GET/HEAD of objects, HEAD of the bucket, ListObjectsV2 and
    multi-object DELETE, after a script of failures: ``fail(n, ...)`` answers the next ``n``
    requests (of ``op``, if given) with ``status``/``code``, or resets their connection."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.log: list[str] = []  # the operation of every request received, in order
        self._script: list[tuple[str | None, int | str, str]] = []
        self._always: tuple[str | None, int | str, str] | None = None
        self.delete_errors = 0  # DeleteObjects answers with per-key InternalError this many times
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

            do_PUT = do_HEAD = do_POST = do_DELETE = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, prefix: str = "p", **options: object) -> str:
        query = "".join(f"&{k}={v}" for k, v in options.items())
        return f"s3://{BUCKET}/{prefix}?endpoint_url={quote(self.endpoint_url, safe=':/')}{query}"

    def fail(self, n: int, status: int | str = 503, code: str = "SlowDown", op: str | None = None):
        with self._lock:
            self._script.extend([(op, status, code)] * n)

    def fail_always(self, status: int | str = 503, code: str = "SlowDown", op: str | None = None):
        self._always = (op, status, code)

    def count(self, op: str) -> int:
        return self.log.count(op)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=30)

    # -- serving --------------------------------------------------------------------------------
    @staticmethod
    def _operation(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str]:
        key = unquote(path.lstrip("/"))[len(BUCKET) + 1 :]
        if method == "POST" and "delete" in query:
            return "DELETE", ""
        if method == "GET" and not key:
            return "LIST", ""
        if method == "HEAD" and not key:
            return "HEAD_BUCKET", ""
        return {"GET": "GET", "PUT": "PUT", "HEAD": "HEAD"}[method], key

    def _failure(self, op: str) -> tuple[int | str, str] | None:
        with self._lock:
            for i, (want, status, code) in enumerate(self._script):
                if want in (None, op):
                    del self._script[i]
                    return status, code
        if self._always and self._always[0] in (None, op):
            return self._always[1], self._always[2]
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        op, key = self._operation(h.command, parts.path, query)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        self.log.append(op)
        failure = self._failure(op)
        if failure is not None:
            status, code = failure
            if status == "reset":
                h.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                h.close_connection = True
                h.connection.close()
                return
            assert isinstance(status, int)
            return self._error(h, status, code)
        if op == "PUT":
            self.objects[key] = body
            return self._reply(h, 200, b"")
        if op in ("GET", "HEAD"):
            if key not in self.objects:
                return self._error(h, 404, "NoSuchKey")
            data = self.objects[key]
            return self._reply(h, 200, data, head_length=len(data) if op == "HEAD" else None)
        if op == "HEAD_BUCKET":
            return self._reply(h, 200, b"", head_length=0)
        if op == "LIST":
            prefix = query.get("prefix", [""])[0]
            keys = sorted(k for k in self.objects if k.startswith(prefix))
            contents = "".join(
                f"<Contents><Key>{escape(k)}</Key><Size>{len(self.objects[k])}</Size></Contents>"
                for k in keys
            )
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{S3_NS}">'
                f"<Name>{BUCKET}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(keys)}"
                f"</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}"
                "</ListBucketResult>"
            )
            return self._reply(h, 200, xml.encode())
        if op == "DELETE":
            keys = [unquote(chunk.split("</Key>")[0]) for chunk in body.decode().split("<Key>")[1:]]
            if self.delete_errors:
                self.delete_errors -= 1
                inner = "".join(
                    f"<Error><Key>{escape(k)}</Key><Code>InternalError</Code>"
                    "<Message>try again</Message></Error>"
                    for k in keys
                )
            else:
                for k in keys:
                    self.objects.pop(k, None)
                inner = "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in keys)
            xml = f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="{S3_NS}">{inner}</DeleteResult>'
            return self._reply(h, 200, xml.encode())
        raise AssertionError(op)

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler, status: int, body: bytes, head_length: int | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body) if head_length is None else head_length))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str) -> None:
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>scripted {code}</Message></Error>"
        ).encode()
        self._reply(h, status, xml, head_length=0 if h.command == "HEAD" else None)


@pytest.fixture(autouse=True)
def _credentials_and_no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FASDL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", RETRY_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-test")


@pytest.fixture
def fake() -> Iterator[FakeS3]:
    server = FakeS3()
    yield server
    server.close()


def _store(fake: FakeS3, retry_s: float = 60.0, **kw: Any) -> S3Store:
    return S3Store(BUCKET, "p", endpoint_url=fake.endpoint_url, check=False, retry_s=retry_s, **kw)


# -- the policy, on a fake clock -----------------------------------------------------------------
def test_backoff_doubles_from_the_base_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(budget_s=60, base_s=0.05, cap_s=2.0)
    assert [policy.bound(n) for n in range(1, 9)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert policy.bound(10_000) == 2.0
    for n in (1, 4, 7):
        delays = [policy.delay(n) for _ in range(2000)]
        assert all(0.0 <= d <= policy.bound(n) for d in delays)
        # full jitter: anywhere from 0 to the bound, not bound/2 .. bound
        assert min(delays) < 0.05 * policy.bound(n) and max(delays) > 0.95 * policy.bound(n)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert s >= 0
        self.sleeps.append(s)
        self.now += s


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(base, "time", types.SimpleNamespace(monotonic=c.monotonic, sleep=c.sleep))
    return c


def test_gives_up_exactly_at_the_budget_naming_op_key_and_time(clock: FakeClock) -> None:
    policy = RetryPolicy(budget_s=30.0, base_s=0.05, cap_s=2.0)
    attempts = []

    def attempt() -> None:
        attempts.append(clock.now)
        clock.now += 0.01  # each attempt takes a little time
        raise TransientStoreError("connection refused")

    with pytest.raises(StoreUnavailable) as info:
        policy.call("PUT", "tmp/k", "s3://b/p/", attempt)
    e = info.value
    for n, s in enumerate(clock.sleeps[:-1], start=1):
        assert s <= policy.bound(n)
    # the last sleep is cut to end at the budget, and one last attempt is made there (or, if
    # the budget ran out during an attempt, that attempt was the last)
    assert 1030.0 - 0.01 - 1e-9 <= attempts[-1] <= 1030.0 + 1e-9
    assert 30.0 <= e.tried_s <= 30.01 + 1e-9 and e.attempts == len(attempts) > 15
    assert (e.op, e.key, e.last_error) == ("PUT", "tmp/k", "connection refused")
    assert str(e).startswith(
        f"PUT 'tmp/k' failed on s3://b/p/: the store was unavailable for 30.0s ({len(attempts)} attempts"
    )
    assert "FASDL_STORE_RETRY_S" in str(e) and str(e).endswith("last error: connection refused")
    assert isinstance(e.__cause__, TransientStoreError)
    assert pickle.loads(pickle.dumps(e)).args == e.args


def test_succeeds_after_transient_failures_without_sleeping_past_the_bounds(
    clock: FakeClock,
) -> None:
    failures = iter(range(5))

    def attempt() -> str:
        if next(failures, None) is not None:
            raise TransientStoreError("503 SlowDown")
        return "ok"

    assert RetryPolicy(budget_s=60).call("GET", "k", "here", attempt) == "ok"
    assert len(clock.sleeps) == 5
    assert all(s <= RetryPolicy().bound(n) for n, s in enumerate(clock.sleeps, start=1))


@pytest.mark.parametrize(
    "error",
    [ObjectNotFound("k", "here"), StoreError("403 denied"), InvalidInput("key", "bad"), OSError(5)],
    ids=["404", "403", "invalid", "oserror"],
)
def test_only_transient_errors_are_retried(clock: FakeClock, error: Exception) -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        RetryPolicy(budget_s=60).call("GET", "k", "here", attempt)
    assert len(calls) == 1 and clock.sleeps == []


def test_max_attempts_caps_the_attempts(clock: FakeClock) -> None:
    def attempt() -> None:
        raise TransientStoreError("reset")

    with pytest.raises(StoreUnavailable, match=r"\(2 attempts"):
        RetryPolicy(budget_s=60, max_attempts=2).call("PUT", "k", "here", attempt)
    assert len(clock.sleeps) == 1


# -- the budget's settings -----------------------------------------------------------------------
def test_budget_defaults_to_60_s_and_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, fake: FakeS3
) -> None:
    assert retry_budget() == 60.0
    assert "retry_s" not in S3Store(BUCKET, endpoint_url=fake.endpoint_url, check=False).url
    monkeypatch.setenv(RETRY_ENV, "2.5")
    assert retry_budget() == 2.5
    assert retry_budget(7) == 7.0  # an explicit value wins
    store = S3Store(BUCKET, "p", endpoint_url=fake.endpoint_url, check=False)
    assert store.retry.budget_s == 2.5
    # carried by the URL, for workers whose environment lacks the variable (Lambda)
    assert "retry_s=2.5" in store.url
    assert open_store(store.url.replace("retry_s=2.5", "retry_s=9")).retry.budget_s == 9.0
    assert open_store("memory://retry-env").retry.budget_s == 2.5


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_bad_budget_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(RETRY_ENV, value)
    with pytest.raises(InvalidInput, match=RETRY_ENV):
        S3Store(BUCKET, endpoint_url="http://127.0.0.1:9", check=False)


def test_budget_in_the_url() -> None:
    assert parse_s3_url("s3://b-1/p?retry_s=120")["retry_s"] == "120"
    with pytest.raises(InvalidInput, match="retry_s"):
        open_store("s3://b-1/p?retry_s=soon")
    with pytest.raises(InvalidInput, match="retry_s"):
        open_store("s3://b-1/p?retry_s=-5")


# -- S3 over HTTP ----------------------------------------------------------------------------------
OPS: dict[str, tuple[str, Callable[[S3Store], Any], Any]] = {
    "put": ("PUT", lambda s: s.put("k", b"new"), None),
    "get": ("GET", lambda s: s.get("there"), b"old"),
    "exists": ("HEAD", lambda s: s.exists("there"), True),
    "delete": ("DELETE", lambda s: s.delete(["there", "gone"]), None),
    "list": ("LIST", lambda s: s.list(), ["there"]),
}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable"), ("reset", "")],
    ids=["503-SlowDown", "500", "503", "reset"],
)
def test_every_operation_retries_transient_failures(
    fake: FakeS3, name: str, status: int | str, code: str
) -> None:
    op, call, expected = OPS[name]
    fake.objects["p/there"] = b"old"
    store = _store(fake)
    fake.fail(3, status, code, op=op)
    assert call(store) == expected
    assert fake.count(op) == 4, "three failures, then the answer"
    assert sum(store.requests.values()) == 1, "retries are not billed requests of the caller"
    store.close()


def test_a_store_that_stays_unavailable_fails_at_the_budget(fake: FakeS3) -> None:
    store = _store(fake, retry_s=2.0)
    store.put("warm", b"up")  # the client is made: an attempt is now one local round trip
    fake.fail_always(503, "SlowDown")
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        store.put("tmp/k", b"v")
    assert 2.0 <= time.monotonic() - t0 < 2.0 + 30  # the budget, plus the last attempt
    e = info.value
    assert e.op == "PUT" and e.key == "tmp/k" and e.tried_s >= 2.0
    assert e.attempts == fake.count("PUT") - 1 >= 2
    assert str(e).startswith(f"PUT 'tmp/k' failed on {store.where}: the store was unavailable for")
    assert "SlowDown (503)" in str(e) and "max retries" not in str(e)
    store.close()


def test_a_refused_connection_is_retried_until_the_budget() -> None:
    with socket.socket() as s:  # bound, not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
        store = S3Store(BUCKET, "p", endpoint_url=endpoint, check=False, retry_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"GET 'k' failed .* unavailable for \d+\.\ds"):
            store.get("k")
        assert 1.0 <= time.monotonic() - t0 < 30
        with pytest.raises(StoreUnavailable, match="EndpointConnectionError"):
            store.list()


def test_budget_zero_is_one_attempt(fake: FakeS3) -> None:
    fake.fail(5, 503, "SlowDown")
    store = _store(fake, retry_s=0)
    with pytest.raises(StoreUnavailable, match=r"\(1 attempts"):
        store.put("k", b"v")
    assert fake.count("PUT") == 1


def test_a_missing_key_is_never_retried(fake: FakeS3) -> None:
    store = _store(fake, retry_s=60)
    t0 = time.monotonic()
    with pytest.raises(ObjectNotFound, match="no object 'missing'"):
        store.get("missing")
    assert store.exists("missing") is False
    assert fake.log == ["GET", "HEAD"]
    assert time.monotonic() - t0 < 10  # no backoff at all (a retry would take 60 s here)


@pytest.mark.parametrize("op", ["GET", "HEAD"])
def test_403_on_a_read_says_what_listbucket_has_to_do_with_it(fake: FakeS3, op: str) -> None:
    fake.fail(1, 403, "AccessDenied", op=op)
    store = _store(fake, retry_s=60)
    t0 = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.get("maybe") if op == "GET" else store.exists("maybe")
    assert time.monotonic() - t0 < 10
    e = info.value
    assert not isinstance(e, StoreUnavailable | TransientStoreError)
    msg = str(e)
    assert f"{op} 'maybe'" in msg and "access denied" in msg
    assert (
        "Without s3:ListBucket on the bucket, S3 answers a missing key with 403 instead of 404"
        in msg
    )
    assert "s3:GetObject" in msg and f"arn:aws:s3:::{BUCKET}" in msg
    assert fake.count(op) == 1, "a 403 is not retried"


@pytest.mark.parametrize(
    ("name", "permission"),
    [("put", "s3:PutObject"), ("delete", "s3:DeleteObject"), ("list", "s3:ListBucket")],
)
def test_403_on_a_write_or_list_names_the_permission(
    fake: FakeS3, name: str, permission: str
) -> None:
    op, call, _ = OPS[name]
    fake.fail(1, 403, "AccessDenied", op=op)
    with pytest.raises(StoreError, match=f"access denied .*need {permission}"):
        call(_store(fake))
    assert fake.count(op) == 1


def test_a_delete_whose_keys_fail_transiently_is_sent_again(fake: FakeS3) -> None:
    fake.objects.update({"p/a": b"1", "p/b": b"2"})
    fake.delete_errors = 2
    store = _store(fake)
    store.delete(["a", "b"])
    assert fake.objects == {} and fake.count("DELETE") == 3


# -- waits -----------------------------------------------------------------------------------------
def test_a_wait_reads_an_unavailable_store_as_not_there_yet(fake: FakeS3) -> None:
    store = _store(fake, retry_s=0)  # waits do not use the budget: one attempt per poll
    fake.fail(4, 503, "SlowDown", op="GET")
    fake.fail(2, "reset", op="GET")
    fake.fail(3, 500, "InternalError", op="GET")

    def arrive_after_the_failures() -> None:
        deadline = time.monotonic() + 60
        while fake.count("GET") < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.objects["p/late"] = b"here"

    t = threading.Thread(target=arrive_after_the_failures)
    t.start()
    assert store.wait("late", timeout_s=120) == b"here"
    t.join()
    assert fake.count("GET") >= 10


def test_a_wait_on_an_unavailable_store_ends_at_its_own_deadline_saying_so(fake: FakeS3) -> None:
    fake.fail_always(503, "SlowDown", op="GET")
    store = _store(fake, retry_s=600)  # far longer than the wait: the wait's deadline rules
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        store.wait("never", timeout_s=2.0, what="merged chunk 1")
    took = time.monotonic() - t0
    assert 2.0 <= took < 15
    assert "merged chunk 1 (key 'never')" in str(info.value)
    assert "the store was unavailable at the last poll" in str(info.value)
    assert "SlowDown" in str(info.value)
    # it backs off while the store is down: not one poll per 50 ms (40 in 2 s)
    assert fake.count("GET") < 25


def test_a_wait_stops_at_once_on_a_403(fake: FakeS3) -> None:
    fake.fail_always(403, "AccessDenied", op="GET")
    store = _store(fake)
    with pytest.raises(StoreError, match="s3:ListBucket"):
        store.wait("k", timeout_s=60)
    assert fake.count("GET") == 1


def test_wait_all_with_a_pool_survives_failures(fake: FakeS3) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = _store(fake, retry_s=0)
    for i in range(6):
        fake.objects[f"p/k{i}"] = str(i).encode()
    fake.fail(5, 503, "SlowDown", op="GET")
    with ThreadPoolExecutor(4) as pool:
        got = store.wait_all([f"k{i}" for i in range(6)], 60, pool=pool, parallel=4)
    assert got == [str(i).encode() for i in range(6)]


# -- opening -------------------------------------------------------------------------------------
def test_a_patient_open_waits_for_a_server_that_is_down(fake: FakeS3) -> None:
    fake.fail(3, 503, "SlowDown", op="HEAD_BUCKET")
    store = open_store(fake.url(), patient=True)
    assert fake.count("HEAD_BUCKET") == 4
    store.put("k", b"v")
    assert fake.objects["p/k"] == b"v"


def test_an_impatient_open_fails_fast_on_a_server_that_is_down(fake: FakeS3) -> None:
    fake.fail_always(503, "SlowDown", op="HEAD_BUCKET")
    with pytest.raises(InvalidInput, match=f"cannot use bucket '{BUCKET}'"):
        open_store(fake.url())
    assert fake.count("HEAD_BUCKET") <= 2


def test_a_patient_open_gives_up_at_the_budget_and_never_waits_for_a_missing_bucket(
    fake: FakeS3,
) -> None:
    fake.fail_always(503, "SlowDown", op="HEAD_BUCKET")
    with pytest.raises(StoreUnavailable, match=r"HEAD bucket 'fake-bucket' failed"):
        open_store(fake.url(retry_s=1), patient=True)
    fake.fail_always(404, "NoSuchBucket", op="HEAD_BUCKET")
    n = fake.count("HEAD_BUCKET")
    with pytest.raises(InvalidInput, match="does not exist"):
        open_store(fake.url(), patient=True)
    assert fake.count("HEAD_BUCKET") == n + 1

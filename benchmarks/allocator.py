"""Training speed with glibc's default malloc thresholds against ``steady_allocator``.

One local-platform function per (regime, repetition) at --memory MB trains --model at batch
--batch on random CIFAR-shaped data and reports ms per iteration (the mean of --iterations
after 5 warm-up ones). The regimes:

    fresh    glibc's defaults in a process that never freed a large block (the profiler's
             function before fasdl.training.allocator: it decodes only a small sample)
    freed    after freeing one 16 MB array (a worker, which frees its partition's buffers; glibc
             raises its threshold to a freed block's size only up to 32 MB)
    steady   fasdl.training.allocator.steady_allocator() first (what fasdl now does)

    python benchmarks/allocator.py                       # resnet8, 1769 MB, batch 16, 3 each
    flock /tmp/fasdl-bench.lock python benchmarks/allocator.py --json

The functions run one at a time, so each has its CPU share to itself; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

REGIMES = ("fresh", "freed", "steady")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Time training iterations in the regime ``event["regime"]`` (runs in the function)."""
    import numpy as np
    import torch

    from fasdl.training import make_optimizer, seeded_model, train_step
    from fasdl.training.allocator import steady_allocator

    regime = event["regime"]
    if regime == "freed":
        big = np.ones(16_000_000, dtype=np.uint8)
        del big
    elif regime == "steady":
        steady_allocator()
    n, batch = 2000, int(event["batch"])
    x = torch.randn(n, 3, 32, 32)
    y = torch.randint(0, 10, (n,))
    model = seeded_model(event["model"], 0, 10, (3, 32, 32))
    opt = make_optimizer(model, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)

    def step() -> None:
        idx = torch.from_numpy(rng.choice(n, batch, replace=False))
        train_step(model, opt, x[idx], y[idx])

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(int(event["iterations"])):
        step()
    return {"ms_per_iteration": (time.perf_counter() - t0) / int(event["iterations"]) * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--memory", type=int, default=1769, help="MB of each function")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="functions per regime")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    from fasdl.platform import open_platform

    event = {"model": args.model, "batch": args.batch, "iterations": args.iterations}
    out: dict[str, list[float]] = {r: [] for r in REGIMES}
    with open_platform("local", concurrency=1) as platform:
        for rep in range(args.repeats):
            for regime in REGIMES:  # interleaved, so a drift of the machine hits all alike
                inv = platform.invoke(
                    "allocator:handler",  # this file, found on sys.path (its directory)
                    {**event, "regime": regime},
                    memory_mb=args.memory,
                    timeout_s=300,
                    sync=True,
                )
                out[regime].append(round(float(inv.result()["ms_per_iteration"]), 2))
                if not args.json:
                    print(f"  {regime:6s} #{rep + 1}: {out[regime][-1]:.2f} ms", file=sys.stderr)
    summary = {
        "model": args.model,
        "memory_mb": args.memory,
        "batch": args.batch,
        "ms_per_iteration": out,
        "median_ms": {r: statistics.median(v) for r, v in out.items()},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        m = summary["median_ms"]
        print(
            f"{args.model} batch {args.batch} at {args.memory} MB, ms per iteration (median of "
            f"{args.repeats}): fresh {m['fresh']:.2f}, freed {m['freed']:.2f}, steady "
            f"{m['steady']:.2f} ({m['fresh'] / m['steady']:.2f}x faster than fresh)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

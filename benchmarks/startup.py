"""A worker's start-up, phase by phase, with fasdl's optimizer against ``torch.optim.SGD``.

--workers local-platform functions of --memory MB start at once, as a round's workers do, and
each does what a K-Reduce worker does before its first iteration, timed:

    to handler   the platform's start of the process, to the handler (interpreter, runner)
    imports      torch and fasdl.kreduce.worker
    data         a partition of --samples CIFAR-shaped samples: get, decode, a writable copy
    model        the model (--model) and its optimizer
    first        the first training iteration (batch 16)

The optimizer is fasdl's ``MomentumSGD`` (``fasdl``) or ``torch.optim.SGD`` (``torch``, fasdl
before it): every ``torch.optim`` optimizer imports ``torch._dynamo``, 1.2 CPU-seconds.

    python benchmarks/startup.py                          # 4 x 885 MB, resnet8, 3 rounds each
    python benchmarks/startup.py --workers 2 --memory 1769 --json
    flock /tmp/fasdl-bench.lock python benchmarks/startup.py

Keep workers x memory / 1769 <= the machine's cores, or the functions share them and the figures
are no longer a function's own; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from typing import Any

OPTIMIZERS = ("fasdl", "torch")
PHASES = ("to_handler", "imports", "data", "model", "first", "total")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A worker's start, timed (runs in the function)."""
    marks = {"handler": time.time()}
    import numpy as np
    import torch

    from fasdl.data import dataset_from_bytes
    from fasdl.kreduce import worker  # noqa: F401  (the worker's imports)
    from fasdl.store import open_store
    from fasdl.training import make_optimizer, seeded_model, train_step
    from fasdl.training.allocator import steady_allocator

    steady_allocator()
    marks["imports"] = time.time()
    store = open_store(event["store"])
    data = dataset_from_bytes(store.get(event["key"]), key=event["key"])
    x = torch.from_numpy(np.array(data.x))
    y = torch.from_numpy(np.array(data.y))
    marks["data"] = time.time()
    model = seeded_model(event["model"], 0, data.num_classes, data.input_shape)
    if event["optimizer"] == "torch":
        opt: Any = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = make_optimizer(model, lr=0.01, momentum=0.9)
    marks["model"] = time.time()
    train_step(model, opt, x[:16], y[:16])
    marks["first"] = time.time()
    return {"marks": marks}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--memory", type=int, default=885, help="MB of each function")
    ap.add_argument("--workers", type=int, default=4, help="functions started at once")
    ap.add_argument("--samples", type=int, default=2500, help="samples in each partition")
    ap.add_argument("--rounds", type=int, default=3, help="starts of the workers per optimizer")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    for flag, value in (
        ("--workers", args.workers),
        ("--samples", args.samples),
        ("--rounds", args.rounds),
    ):
        if value < 1:
            ap.error(f"{flag} must be >= 1, got {value}")

    from fasdl.data import dataset_to_bytes, load_dataset
    from fasdl.platform import open_platform
    from fasdl.store import open_store

    seconds: dict[str, dict[str, list[float]]] = {o: {p: [] for p in PHASES} for o in OPTIMIZERS}
    with tempfile.TemporaryDirectory(prefix="fasdl-startup-") as tmp:
        store = open_store(f"file://{tmp}/store")
        train, _ = load_dataset(f"synthetic:{args.samples}", seed=0)
        store.put("partition", dataset_to_bytes(train))
        event = {"store": store.url, "key": "partition", "model": args.model}
        with open_platform("local", concurrency=args.workers) as platform:
            for rnd in range(args.rounds):
                for optimizer in OPTIMIZERS:  # interleaved: a drift of the machine hits both
                    invs = [
                        platform.invoke(
                            "startup:handler",  # this file, found on sys.path (its directory)
                            {**event, "optimizer": optimizer},
                            memory_mb=args.memory,
                            timeout_s=300,
                        )
                        for _ in range(args.workers)
                    ]
                    for inv in invs:
                        m = inv.result(timeout_s=300)["marks"]
                        assert inv.started_at is not None
                        s = seconds[optimizer]
                        s["to_handler"].append(m["handler"] - inv.started_at)
                        s["imports"].append(m["imports"] - m["handler"])
                        s["data"].append(m["data"] - m["imports"])
                        s["model"].append(m["model"] - m["data"])
                        s["first"].append(m["first"] - m["model"])
                        s["total"].append(m["first"] - inv.started_at)
                    if not args.json:
                        total = statistics.median(seconds[optimizer]["total"][-args.workers :])
                        print(f"  round {rnd + 1} {optimizer}: {total:.2f} s", file=sys.stderr)
    medians = {
        o: {p: round(statistics.median(v), 3) for p, v in s.items()} for o, s in seconds.items()
    }
    summary = {
        "model": args.model,
        "memory_mb": args.memory,
        "workers": args.workers,
        "samples": args.samples,
        "rounds": args.rounds,
        "median_s": medians,
        "seconds": seconds,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.workers} x {args.memory} MB, {args.model}, {args.samples} samples each; "
            f"median s over {args.rounds * args.workers} functions"
        )
        print(f"{'optimizer':<10}" + "".join(f"{p:>11}" for p in PHASES))
        for o in OPTIMIZERS:
            print(f"{o:<10}" + "".join(f"{medians[o][p]:>11.3f}" for p in PHASES))
        speedup = medians["torch"]["total"] / medians["fasdl"]["total"]
        print(f"start-up with fasdl's optimizer: {speedup:.2f}x faster than with torch.optim.SGD")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

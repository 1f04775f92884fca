"""``fasdl demo``: a complete small K-Reduce job on the embedded default (local platform, file store)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fasdl.cli.platform_flags import add_platform_flags
from fasdl.cli.train import run_and_report
from fasdl.kreduce.config import JobConfig

DEMO_JOB = {
    "model": "cnn",
    "dataset": "digits",  # scikit-learn's 1,797 handwritten digits: real data that ships offline
    "num_workers": 4,
    "num_aggregators": 2,
    "batch_size_agg": 32,
    "batch_size_wor": 16,
    "epochs": 8,
    "lr": 0.05,
    "memory_mb": 884,  # just under half a vCPU each: four functions fill a 2-core machine
    "func_time_s": 120,
    # Checkpoint and re-invoke every 40 iterations, as a 900 s limit forces on a long job.
    "max_iterations_per_invocation": 40,
    "platform": "local",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a complete small K-Reduce job locally (one to two minutes on 2 cores)",
        description="Train a small CNN on scikit-learn's digits with K-Reduce: 4 functions of 884 MB on the local "
        "platform, 2 of them aggregators, through a file store. Every 40 iterations the workers agree to "
        "stop, checkpoint and continue in new invocations, as Lambda's 900 s limit forces on long jobs.",
    )
    p.add_argument("--store", help="object store URL (default: a new temporary directory)")
    add_platform_flags(
        p,
        default="local",
        help="function platform (default local; lithops --backend localhost "
        "runs the same functions through Lithops)",
    )
    p.add_argument(
        "--epochs", type=int, default=DEMO_JOB["epochs"], help="epochs (default %(default)s)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = args.store or Path(tempfile.mkdtemp(prefix="fasdl-demo-")).as_uri()
    cfg = JobConfig.from_dict(
        {**DEMO_JOB, "epochs": args.epochs, "store": store, "platform": args.platform}
    )
    if not args.json:
        print(
            f"fasdl demo: {cfg.num_workers} workers ({cfg.num_aggregators} aggregators, batch {cfg.batch_size_agg}; "
            f"others batch {cfg.batch_size_wor}) train a {cfg.model} on digits, {cfg.epochs} epochs, "
            f"{cfg.memory_mb} MB functions limited to {cfg.func_time_s:g} s on the {cfg.platform} "
            f"platform, store {store}"
        )
    return run_and_report(cfg, as_json=args.json, show_progress=not args.no_progress)

"""What a failed worker costs: the same job straight, and with one worker killed mid-round.

On the local platform with a file store, a job runs once without faults and once with worker
``--kill-worker`` SIGKILLing itself at iteration ``--kill-at`` (the ``FASDL_TEST_KILL_AT`` hook: a
real crash). The coordinator retries the round from the last checkpoint set. Printed: wall time
of both runs, the difference (the time a retry costs), the iterations lost and what they are
worth at the measured seconds per iteration, the billed GB-seconds of both, and whether the final
weights are bit-identical.

    python benchmarks/faults.py                      # ResNet-18, W = 2 at 884 MB, ~10 min
    python benchmarks/faults.py --model cnn --quick  # a smoke run, ~1 min
    python benchmarks/faults.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import JobSummary, final_vector, run_job
from fasdl.kreduce.worker import KILL_AT_ENV

RESULTS = Path(__file__).parent / "results"


def run(cfg: JobConfig, kill: str | None) -> tuple[JobSummary, float]:
    if kill:
        os.environ[KILL_AT_ENV] = kill
    try:
        t0 = time.monotonic()
        summary = run_job(cfg)
        return summary, time.monotonic() - t0
    finally:
        os.environ.pop(KILL_AT_ENV, None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--dataset", default="synthetic:1200")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--aggregators", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--memory", type=int, default=884)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=12, help="iterations per round")
    p.add_argument("--kill-worker", type=int, default=1)
    p.add_argument("--kill-at", type=int, default=18, help="the iteration the worker dies at")
    p.add_argument("--quick", action="store_true", help="cnn on synthetic:600")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.model, args.dataset = "cnn", "synthetic:600"

    root = Path(tempfile.mkdtemp(prefix="fasdl-faults-"))
    base = {
        "model": args.model,
        "dataset": args.dataset,
        "num_workers": args.workers,
        "num_aggregators": args.aggregators,
        "batch_size_agg": args.batch,
        "batch_size_wor": args.batch,
        "epochs": args.epochs,
        "memory_mb": args.memory,
        "max_iterations_per_invocation": args.checkpoint_every,
        "platform": "local",
    }
    straight = JobConfig(**base, store=(root / "straight").as_uri(), job_id="straight")
    faulty = JobConfig(**base, store=(root / "faulty").as_uri(), job_id="faulty")
    s1, wall1 = run(straight, None)
    # Round r runs iterations r*N+1 .. (r+1)*N and, with no failure before it, is attempt r: the
    # worker dies in that attempt only, so its retry goes through.
    attempt = (args.kill_at - 1) // args.checkpoint_every
    s2, wall2 = run(faulty, f"{args.kill_worker}:{args.kill_at}:{attempt}")
    per_iteration = wall1 / s1.iterations
    lost = sum(r["iterations_lost"] for r in s2.retries)
    out: dict[str, Any] = {
        "config": base,
        "load_average": os.getloadavg(),
        "straight": {"wall_s": wall1, "billed_gb_s": s1.billed_gb_s, "rounds": s1.rounds},
        "with_one_kill": {
            "wall_s": wall2,
            "billed_gb_s": s2.billed_gb_s,
            "rounds": s2.rounds,
            "retries": s2.retries,
        },
        "retry_cost_s": wall2 - wall1,
        "retry_cost_gb_s": s2.billed_gb_s - s1.billed_gb_s,
        "iterations": s1.iterations,
        "seconds_per_iteration": per_iteration,
        "iterations_lost": lost,
        "lost_iterations_worth_s": lost * per_iteration,
        "bit_identical": bool(np.array_equal(final_vector(straight), final_vector(faulty))),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"faults-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.model} on {args.dataset}: W={args.workers} K={args.aggregators} "
          f"B={args.batch} at {args.memory} MB, {s1.iterations} iterations, "
          f"{args.checkpoint_every} per round; worker {args.kill_worker} killed at iteration {args.kill_at}")  # fmt: skip
    print(f"  straight        {wall1:8.1f} s   {s1.billed_gb_s:8.1f} GB-s   {s1.rounds} rounds")
    print(f"  one kill        {wall2:8.1f} s   {s2.billed_gb_s:8.1f} GB-s   {s2.rounds} rounds, "
          f"{len(s2.retries)} retry")  # fmt: skip
    print(f"  a retry costs   {wall2 - wall1:8.1f} s   {s2.billed_gb_s - s1.billed_gb_s:8.1f} GB-s")
    print(f"  of which        {lost} iteration(s) lost, worth {lost * per_iteration:.1f} s at "
          f"{per_iteration:.2f} s/iteration; the rest is detecting the crash and starting again")  # fmt: skip
    print(f"  final weights   {'bit-identical' if out['bit_identical'] else 'DIFFERENT'}")
    print(f"  load average    {' '.join(f'{x:.2f}' for x in out['load_average'])}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()

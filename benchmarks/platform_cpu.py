"""CPU in proportion to memory on the local platform: the same CPU-bound job at 442, 885, 1,769 MB.

Each function trains a tiny CNN for a few SGD steps (``fasdl.platform.smoke:cnn_steps``) and
reports the time of those steps measured inside the handler, so process start and the torch import
are left out. Functions run one at a time; the memory sizes take turns, so a change in the
machine's load touches all of them alike. Lambda would take about 4, 2 and 1 times as long.

    python benchmarks/platform_cpu.py [--reps 3] [--steps 20] [--json]

Run it on a quiet machine: other load lowers the CPU every size gets, the 1,769 MB one the most
(it asks for a whole core), which squeezes the ratios below 4 and 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from fasdl.platform.limits import vcpus_for_memory
from fasdl.platform.local import DEFAULT_PERIOD_S, LocalPlatform

MEMORY_SIZES_MB = (442, 885, 1769)
REFERENCE_MB = 1769
TOLERANCE = 0.10


def measure(*, reps: int, steps: int, batch_size: int, timeout_s: float, period_s: float) -> dict:
    times: dict[int, list[float]] = {m: [] for m in MEMORY_SIZES_MB}
    rates: dict[int, list[float]] = {m: [] for m in MEMORY_SIZES_MB}
    with LocalPlatform(concurrency=1, cpu_period_s=period_s) as plat:
        for rep in range(reps):
            for memory_mb in MEMORY_SIZES_MB:
                inv = plat.invoke(
                    "cnn_steps",
                    {"steps": steps, "batch_size": batch_size, "seed": rep},
                    memory_mb=memory_mb,
                    timeout_s=timeout_s,
                    sync=True,
                )
                result = inv.result()
                times[memory_mb].append(result["elapsed_s"])
                rates[memory_mb].append(result["cpu_s"] / result["elapsed_s"])
                print(
                    f"  rep {rep + 1}/{reps}  {memory_mb:>5} MB  {result['elapsed_s']:7.3f} s  "
                    f"({rates[memory_mb][-1]:.2f} CPUs used, billed {inv.record().billed_ms} ms)",
                    file=sys.stderr,
                )
    reference = statistics.median(times[REFERENCE_MB])
    rows = []
    for memory_mb in MEMORY_SIZES_MB:
        median_s = statistics.median(times[memory_mb])
        expected = vcpus_for_memory(REFERENCE_MB) / vcpus_for_memory(memory_mb)
        ratio = median_s / reference
        rows.append(
            {
                "memory_mb": memory_mb,
                "vcpus": round(vcpus_for_memory(memory_mb), 4),
                "median_s": median_s,
                "times_s": times[memory_mb],
                "cpus_used": statistics.median(rates[memory_mb]),
                "ratio": ratio,
                "lambda_ratio": expected,
                "within_10pct": abs(ratio / expected - 1) <= TOLERANCE,
            }
        )
    return {
        "reps": reps,
        "steps": steps,
        "batch_size": batch_size,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="repetitions per memory size (median; default 3)"
    )
    parser.add_argument(
        "--steps", type=int, default=20, help="timed SGD steps per function (default 20)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument(
        "--timeout", type=float, default=600, help="timeout per function in s (default 600)"
    )
    parser.add_argument(
        "--period",
        type=float,
        default=DEFAULT_PERIOD_S,
        help="CPU duty-cycling period in s (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error("--reps, --steps and --batch-size must be at least 1")
    started = time.monotonic()
    report = measure(
        reps=args.reps,
        steps=args.steps,
        batch_size=args.batch_size,
        timeout_s=args.timeout,
        period_s=args.period,
    )
    report["wall_s"] = time.monotonic() - started
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"cnn_steps: {args.steps} steps of batch {args.batch_size}, median of {args.reps}, one function at a time"
    )
    print(
        f"{'memory MB':>9}  {'vCPUs':>5}  {'median s':>8}  {'CPUs used':>9}  {'ratio':>5}  {'Lambda':>6}  within 10 %"
    )
    for row in report["rows"]:
        print(
            f"{row['memory_mb']:>9}  {row['vcpus']:>5.2f}  {row['median_s']:>8.3f}  {row['cpus_used']:>9.2f}  "
            f"{row['ratio']:>5.2f}  {row['lambda_ratio']:>6.2f}  {'yes' if row['within_10pct'] else 'NO'}"
        )
    reference_row = report["rows"][-1]
    if reference_row["cpus_used"] < 0.9 * reference_row["vcpus"]:
        print(
            f"the {REFERENCE_MB:,} MB function got only {reference_row['cpus_used']:.2f} of its "
            f"{reference_row['vcpus']:.2f} vCPUs: the machine is busy, so the ratios are squeezed"
        )
    load = report["load_avg_1min"]
    print(
        f"({report['cpu_count']} cores, load average {load:.2f} at the end; {report['wall_s']:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

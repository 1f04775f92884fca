"""``fasdl smoke``: invoke a few functions on a platform and print what they cost."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fasdl.cli.platform_flags import add_platform_flags
from fasdl.platform.smoke import JOBS, SmokeReport, run_smoke

DESCRIPTION = """\
Invoke N functions asynchronously on a function platform, wait for them (with a deadline) and
print each invocation: its state, billed duration, GB-seconds and peak memory.

The default job (cnn) trains a tiny CNN for a few SGD steps on random data in every function;
echo runs a trivial handler. On the local platform each function is a fresh process with
Lambda's CPU share for its memory (1,769 MB = 1 vCPU), its memory limit and its timeout.
Exit code 0 if every invocation succeeded, 1 otherwise.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "smoke",
        help="run a few functions on the platform and print their records",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_platform_flags(p, default="local", help="function platform (default: local)")
    p.add_argument(
        "--job", choices=sorted(JOBS), default="cnn", help="what each function does (default: cnn)"
    )
    p.add_argument(
        "--memory",
        type=int,
        default=1769,
        metavar="MB",
        help="memory per function, 128–10240 MB (default: 1769 = 1 vCPU)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120,
        metavar="S",
        help="timeout per function, 1–900 s (default: 120)",
    )
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="functions to invoke (default: 2)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=5,
        metavar="N",
        help="SGD steps per function for --job cnn (default: 5)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    # the platform's field -> the flag's dest, so that errors name the flag (see main.py)
    p.set_defaults(func=run, field_dests={"memory_mb": "memory", "timeout_s": "timeout"})


def run(args: argparse.Namespace) -> int:
    report = run_smoke(
        platform=args.platform,
        job=args.job,
        memory_mb=args.memory,
        timeout_s=args.timeout,
        workers=args.workers,
        steps=args.steps,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.succeeded == len(report.records) else 1


def format_report(report: SmokeReport) -> str:
    lines = [
        f"{'#':>3}  {'request':8}  {'state':13}  {'billed ms':>9}  {'GB-s':>8}  {'peak MB':>7}  result"
    ]
    for i, (rec, result) in enumerate(zip(report.records, report.results, strict=True)):
        lines.append(
            f"{i:>3}  {rec['request_id'][:8]:8}  {rec['state']:13}  {rec['billed_ms']:>9}  "
            f"{rec['gb_s']:>8.3f}  {rec['peak_memory_mb']:>7.0f}  {_summarise(rec, result)}"
        )
    lines.append(
        f"{report.succeeded}/{len(report.records)} succeeded on the {report.platform} platform "
        f"in {report.wall_s:.1f} s; {report.total_gb_s:.3f} GB-s billed"
    )
    return "\n".join(lines)


def _summarise(rec: dict[str, Any], result: object) -> str:
    if rec["state"] != "succeeded":
        return (rec.get("error") or "").splitlines()[0][:80] if rec.get("error") else ""
    if isinstance(result, dict) and "elapsed_s" in result:
        return f"{result['steps']} steps in {result['elapsed_s']:.3f} s, loss {result['loss']:.3f}, {result['torch_threads']} thread(s)"
    if isinstance(result, dict) and "sum_squares" in result:
        return f"echo {result['echo']}, sum of squares {result['sum_squares']}"
    return json.dumps(result)[:80]

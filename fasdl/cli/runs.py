"""``fasdl runs``: one line per job in a store, newest first."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "runs",
        help="list the jobs in a store, newest first",
        description=(
            "One line per job in the store (under its default output/ prefix), newest first: "
            "id, model, pattern, W/K/memory, state, iterations, test accuracy, wall time, cost."
        ),
    )
    p.add_argument("--store", required=True, help="the store URL, as given to fasdl train")
    p.add_argument("--json", action="store_true", help="print the jobs as one JSON list")
    p.set_defaults(func=run, field_dests={"store": "store"})


HEADER = ("job", "model", "pattern", "W/K/MB", "state", "iterations", "accuracy", "time", "cost")


def run(args: argparse.Namespace) -> int:
    from fasdl.reports import runs
    from fasdl.store import open_store

    rows = runs(open_store(args.store))
    if args.json:
        print(json.dumps([r.to_dict() for r in rows]))
        return 0
    if not rows:
        print(f"fasdl runs: no job in {args.store}")
        return 0
    table = [HEADER] + [
        (
            r.job_id,
            r.model,
            r.pattern,
            f"{r.num_workers}/{r.num_aggregators}/{r.memory_mb}",
            r.state,
            f"{r.iteration}/{r.total_iterations if r.total_iterations is not None else '?'}",
            "-" if r.test_accuracy is None else f"{100 * r.test_accuracy:.1f} %",
            "-" if r.wall_time_s is None else f"{r.wall_time_s:.1f} s",
            f"${r.cost_usd:.6f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0

"""``fasdl report``: a job's report.html (loss, phases, invocations, cost, plan) with its PNGs."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write a job's report.html: loss, time per phase, invocations, cost",
        description=(
            "Write one self-contained report.html for a job (its PNGs inlined and also written "
            "beside it): training loss against iteration and wall time with the test accuracy, "
            "time per iteration by phase for an aggregator and a non-aggregator, a timeline of "
            "the invocations with rounds and retries, the cost by functions and request kind, "
            "predicted against measured when the job came from a plan, and its configuration "
            "and outputs. Works on a running, failed or finished job. See docs/reports.md."
        ),
    )
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id (`fasdl runs` lists them)")
    p.add_argument("--store", required=True, help="the job's store URL, as given to fasdl train")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write report.html and the PNGs into this local directory (default: into the "
        "job's store, under output/JOB_ID/report/)",
    )
    p.add_argument("--json", action="store_true", help="print where the report is as JSON")
    p.set_defaults(func=run, field_dests={"job_id": "job_id", "store": "store", "out": "out"})


def run(args: argparse.Namespace) -> int:
    from fasdl.reports import make_report
    from fasdl.store import open_store

    store = open_store(args.store)
    path = make_report(store, args.job_id, args.out)
    if args.json:
        print(json.dumps({"job_id": args.job_id, "report": path}))
    else:
        print(f"fasdl report: job {args.job_id}: {path}")
    return 0

"""``fasdl status``: where a job is now, from any terminal, while it runs or after."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fasdl.reports import JobStatus


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="a job's round, iteration, loss, pace, cost so far, time left and workers",
        description=(
            "Show a job's state from its store alone, from any terminal, while it runs or after: "
            "round, iteration, epoch, loss, seconds per iteration, cost so far (an estimate "
            "while it runs: the functions' time so far, as the progress bar counts it), an "
            "estimate of the time left, and the state of each worker. A job whose coordinator "
            "is gone shows as stopped: `fasdl resume` continues it."
        ),
    )
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id (`fasdl runs` lists them)")
    p.add_argument("--store", required=True, help="the job's store URL, as given to fasdl train")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=run, field_dests={"job_id": "job_id", "store": "store"})


def run(args: argparse.Namespace) -> int:
    from fasdl.reports import status
    from fasdl.store import open_store

    s = status(open_store(args.store), args.job_id)
    if args.json:
        print(json.dumps(s.to_dict()))
    else:
        print(format_status(s))
    return 0


def format_status(s: JobStatus) -> str:
    total = s.total_iterations if s.total_iterations is not None else "?"
    epoch = f", epoch {s.epoch + 1}/{s.epochs}" if s.epoch is not None else ""
    loss = f", loss {s.loss:.4f}" if s.loss is not None else ""
    pace = f"{s.seconds_per_iteration:.3f} s/iteration" if s.seconds_per_iteration else "n/a"
    left = "n/a" if s.time_left_s is None else f"about {s.time_left_s:.0f} s"
    cost = f"${s.cost_usd:.6f}" + (" (estimate: functions only)" if s.cost_is_estimate else "")
    lines = [
        f"job {s.job_id}: {s.state}, round {s.round}, iteration {s.iteration}/{total}{epoch}{loss}",
        f"  pace          {pace}",
        f"  time left     {left}",
        f"  cost so far   {cost}",
    ]
    if s.wall_time_s is not None:
        lines.append(f"  wall time     {s.wall_time_s:.1f} s")
    if s.test_accuracy is not None:
        lines.append(f"  test accuracy {100 * s.test_accuracy:.2f} %")
    if s.retries:
        lines.append(f"  retries       {s.retries}")
    if s.error and s.state != "finished":
        lines.append(f"  error         {s.error}")
    for w in s.workers:
        lines.append(f"  worker {w.worker:<3}    {w.role}: {w.state}")
    return "\n".join(lines)

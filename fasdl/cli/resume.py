"""``fasdl resume``: continue a job whose coordinator stopped, from its store alone."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from fasdl.cli.platform_flags import add_platform_flags
from fasdl.cli.train import drive_and_report

if TYPE_CHECKING:
    from fasdl.kreduce.coordinator import JobSummary, ProgressUpdate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "resume",
        help="continue a stopped job from its last checkpoints",
        description=(
            "Continue a job whose coordinator stopped (killed, interrupted, machine rebooted, or "
            "out of retries) from what its store holds: its configuration, its last consistent "
            "checkpoint set. The outputs, summary and final weights are those of an "
            "uninterrupted run; cost and requests include every attempt. A job whose "
            "coordinator is still alive (its lease was renewed in the last 20 s) is refused."
        ),
    )
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id (`fasdl train` prints it)")
    p.add_argument("--store", required=True, help="the job's store URL, as given to fasdl train")
    add_platform_flags(p, default=None, help="function platform (default: the job's)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, field_dests={"job_id": "job_id", "store": "store"})


def run(args: argparse.Namespace) -> int:
    from fasdl.kreduce.coordinator import resume_job
    from fasdl.platform import open_platform

    def start(progress: Callable[[ProgressUpdate], None]) -> JobSummary:
        if args.platform is None:
            return resume_job(args.job_id, args.store, progress=progress)
        with open_platform(args.platform) as platform:
            return resume_job(args.job_id, args.store, platform=platform, progress=progress)

    return drive_and_report(
        start,
        job_id=args.job_id,
        store=args.store,
        as_json=args.json,
        show_progress=not args.no_progress,
    )

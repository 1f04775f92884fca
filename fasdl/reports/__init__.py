"""See a run: the data a job leaves in its store (``run``), what is shown of it (``analysis``),
its figures (``plots``) and its page (``report``). ``fasdl report``, ``status`` and ``runs``, and
the end of ``fasdl train``, call the functions here; docs/reports.md explains each plot."""

from __future__ import annotations

import time
from pathlib import Path

from fasdl.pricing import load_prices
from fasdl.reports.analysis import JobStatus, RunRow, job_status, newest_first, run_row
from fasdl.reports.report import (
    REPORT_FILE,
    Report,
    build_report,
    put_report,
    report_prefix,
    write_report_dir,
)
from fasdl.reports.run import RunData, list_job_ids, read_run
from fasdl.store import ObjectStore
from fasdl.store.file import FileStore


def make_report(store: ObjectStore, job_id: str, out: str | Path | None = None) -> str:
    """Write job ``job_id``'s report into ``out`` (a local directory) or, without one, into its
    store under ``output/<job>/report/``; where the page is (a local path when it is a file)."""
    run = read_run(store, job_id)
    report = build_report(run, load_prices(arch=run.config.arch))
    if out is not None:
        return str(write_report_dir(report, out))
    return location(store, put_report(report, store, report_prefix(run)))


def location(store: ObjectStore, key: str) -> str:
    """A key of ``store`` as a user opens it: a local path for a file store, else its URL (with
    the store URL's options, such as an S3 endpoint, after the key)."""
    if isinstance(store, FileStore):
        return str(store.root / key)
    base, _, options = store.url.partition("?")
    return f"{base.rstrip('/')}/{key}" + (f"?{options}" if options else "")


def status(store: ObjectStore, job_id: str) -> JobStatus:
    run = read_run(store, job_id)
    return job_status(run, load_prices(arch=run.config.arch), time.time())


def runs(store: ObjectStore) -> list[RunRow]:
    """One row per job in ``store``, newest first."""
    now = time.time()
    rows = []
    for job_id in list_job_ids(store):
        run = read_run(store, job_id, logs=False)
        rows.append(run_row(run, load_prices(arch=run.config.arch), now))
    return newest_first(rows)


__all__ = [
    "REPORT_FILE",
    "JobStatus",
    "Report",
    "RunData",
    "RunRow",
    "build_report",
    "location",
    "make_report",
    "read_run",
    "runs",
    "status",
]

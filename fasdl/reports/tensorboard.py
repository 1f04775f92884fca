"""``fasdl train --tensorboard DIR``: a finished run's scalars as TensorBoard event files.

Written after the run from what the store holds (the same logs the report plots), so a job on
any platform gets them and nothing is added to the workers: every worker's loss and seconds
per iteration by phase against the iteration (wall time as the event's time, when the logs
carry it), and the test accuracy, cost and wall time at the last iteration. ``torch``'s
``SummaryWriter`` needs the ``tensorboard`` package (``pip install 'fasdl[tensorboard]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput
from fasdl.reports.run import RunData

INSTALL_HINT = "pip install 'fasdl[tensorboard]' (or pip install tensorboard)"


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; ``InvalidInput`` on ``tensorboard`` with the
    install hint when the package is missing (checked before a job starts)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise InvalidInput(
            "tensorboard", f"needs the tensorboard package, which is missing ({e})", INSTALL_HINT
        ) from None
    return SummaryWriter


def write_tensorboard(run: RunData, directory: str | Path) -> Path:
    """Write ``run``'s scalars under ``directory/<job_id>``; that directory."""
    writer_class = summary_writer_class()
    out = Path(directory) / run.job_id
    writer = writer_class(log_dir=str(out))
    try:
        last = 0
        for w, rows in sorted(run.logs.items()):
            for r in rows:
                wall = r.end_s
                writer.add_scalar(f"loss/worker{w}", r.loss, r.iteration, walltime=wall)
                for phase in ("train_s", "upload_s", "aggregate_s", "download_s", "iteration_s"):
                    writer.add_scalar(
                        f"seconds/{phase}/worker{w}", getattr(r, phase), r.iteration, walltime=wall
                    )
                last = max(last, r.iteration)
        s = run.summary
        if s is not None:
            if s.test_accuracy is not None:
                writer.add_scalar("test/accuracy", s.test_accuracy, last)
            for part, usd in s.cost_usd.items():
                writer.add_scalar(f"cost_usd/{part}", usd, last)
            writer.add_scalar("time/wall_s", s.wall_time_s, last)
    finally:
        writer.close()
    return out

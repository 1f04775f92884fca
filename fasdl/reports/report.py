"""``report.html``: one self-contained page per job (its PNGs inlined as ``data:`` URIs, and also
written beside it), built from a ``RunData`` by ``build_report``; written to a directory or into
the job's store (``output/<job>/report/``) by the two writers at the end."""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path

from fasdl.optimizer.accuracy import PredictionCheck
from fasdl.pricing import Prices
from fasdl.reports import analysis, plots
from fasdl.reports.run import RunData
from fasdl.store import ObjectStore

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Report:
    job_id: str
    html: str
    images: dict[str, bytes]  # file name -> PNG, in the page's order


def report_prefix(run: RunData) -> str:
    """Where the report goes in the job's store."""
    return f"{run.keys.output}report/"


def build_report(run: RunData, prices: Prices, now: float | None = None) -> Report:
    now = time.time() if now is None else now
    status = analysis.job_status(run, prices, now)
    acc = status.test_accuracy
    cost = analysis.cost_split(run, prices)
    images: dict[str, bytes] = {
        "loss.png": plots.loss_figure(analysis.loss_curve(run), acc),
        "phases.png": plots.phases_figure(analysis.phase_breakdown(run)),
        "timeline.png": plots.timeline_figure(analysis.timeline(run), run.config.num_workers),
        "cost.png": plots.cost_figure(cost),
    }
    if run.prediction is not None:
        images["prediction.png"] = plots.prediction_figure(run.prediction)
    return Report(run.job_id, _page(run, status, images, cost), images)


_CAPTIONS = {
    "loss.png": (
        "Training loss",
        "Worker 0's loss at each iteration, against the iteration and against the seconds since "
        "the first invocation started; the title gives the final model's test accuracy.",
    ),
    "phases.png": (
        "Time per iteration",
        "Mean seconds of each phase of an iteration for an aggregator and a non-aggregator: "
        "K-Reduce's non-aggregators upload and download but never wait for aggregation.",
    ),
    "timeline.png": (
        "Invocations",
        "One row per worker, one bar per function invocation: each round re-invokes every "
        "worker from the last checkpoints; a failed attempt is hatched and retried.",
    ),
    "cost.png": (
        "Cost and requests",
        "Dollars for the functions (GB-seconds and invocations) and for the store's requests by "
        "kind, at the job's prices; and the requests per training iteration.",
    ),
    "prediction.png": (
        "Plan against measurement",
        "What this job measured over what the optimizer's plan predicted, for the whole job "
        "and each term of the model (log axis: 1 is exact); the table gives the values.",
    ),
}


def _page(
    run: RunData,
    status: analysis.JobStatus,
    images: dict[str, bytes],
    cost: analysis.CostSplit | None,
) -> str:
    cfg = run.config
    e = html.escape
    acc = "n/a" if status.test_accuracy is None else f"{100 * status.test_accuracy:.2f} %"
    wall = "n/a" if status.wall_time_s is None else f"{status.wall_time_s:.1f} s"
    headline = [
        ("state", status.state),
        ("iterations", f"{status.iteration} / {status.total_iterations or '?'}"),
        ("rounds", str(status.round)),
        ("retries", str(status.retries)),
        ("wall time", wall),
        ("final loss", "n/a" if status.loss is None else f"{status.loss:.4f}"),
        ("test accuracy", acc),
        ("cost", f"${status.cost_usd:.6f}" + (" (estimate)" if status.cost_is_estimate else "")),
    ]
    figures = []
    for name, png in images.items():
        title, caption = _CAPTIONS[name]
        data = base64.b64encode(png).decode()
        table = ""
        if name == "prediction.png" and run.prediction is not None:
            table = f'<table class="config">{_rows(_prediction_rows(run.prediction))}</table>'
        figures.append(
            f"<section><h2>{e(title)}</h2><p>{e(caption)}</p>"
            f'<img src="data:image/png;base64,{data}" alt="{e(title)}" '
            f'data-file="{e(name)}">{table}</section>'
        )
    retries = "".join(
        f"<li>round {r.round}, attempt {r.attempt}: "
        f"{'the round' if r.worker is None else f'worker {r.worker}'} failed, "
        f"{r.iterations_lost} iteration(s) lost: {e(r.reason)}</li>"
        for r in run.state.retries
    )
    requests = ""
    if cost is not None:
        requests = ", ".join(f"{k} {n:,}" for k, n in cost.requests.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>fasdl job {e(run.job_id)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1040px; margin: 1em auto; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-bottom: 0.2em; }}
p {{ margin-top: 0.2em; color: #555; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: left; }}
.headline td:first-child, .config td:first-child {{ color: #555; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>fasdl job {e(run.job_id)}: {e(cfg.model)} on {e(cfg.dataset)}, {e(cfg.pattern)}
W={cfg.num_workers} K={cfg.num_aggregators}, {cfg.memory_mb} MB</h1>
<table class="headline">{_rows(headline)}</table>
{f"<p>error: {e(status.error)}</p>" if status.error and status.state != "finished" else ""}
{f"<h2>Retries</h2><ul>{retries}</ul>" if retries else ""}
{"".join(figures)}
<section><h2>Configuration</h2><table class="config">{_rows(analysis.config_rows(run))}</table></section>
<section><h2>Outputs</h2><table class="config">{_rows(analysis.output_rows(run))}</table>
{f"<p>requests: {e(requests)}</p>" if requests else ""}</section>
</body></html>
"""


def _prediction_rows(p: PredictionCheck) -> list[tuple[str, str]]:
    def show(v: float) -> str:
        return f"{v:.6g}"

    rows = [
        ("", "predicted / measured"),
        ("job time (s)", f"{show(p.time_s)} / {show(p.measured_time_s)}"),
        ("job cost (USD)", f"{show(p.cost_usd)} / {show(p.measured_cost_usd)}"),
    ]
    rows += [(name, f"{show(t.predicted)} / {show(t.measured)}") for name, t in p.terms.items()]
    return rows


def _rows(rows: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)


def write_report_dir(report: Report, directory: str | Path) -> Path:
    """Write ``report.html`` and its PNGs into ``directory`` (made if missing); the page's path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, png in report.images.items():
        (out / name).write_bytes(png)
    page = out / REPORT_FILE
    page.write_bytes(report.html.encode())
    return page


def put_report(report: Report, store: ObjectStore, prefix: str) -> str:
    """Put ``report.html`` and its PNGs under ``prefix`` in ``store``; the page's key."""
    for name, png in report.images.items():
        store.put(prefix + name, png)
    store.put(prefix + REPORT_FILE, report.html.encode())
    return prefix + REPORT_FILE

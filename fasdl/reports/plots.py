"""The report's figures: each a pure function of values from ``analysis`` to PNG bytes.

Figures are drawn on matplotlib's object API with the Agg canvas (no pyplot, no display, no
global state), so a report can be made in any thread or process. docs/reports.md explains what
each one shows.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fasdl.kreduce.logs import IterationStats
from fasdl.optimizer.accuracy import PredictionCheck
from fasdl.reports.analysis import CostSplit, LossCurve, Span

PHASES = ("train", "upload", "aggregate", "download", "other")
PHASE_COLOURS = {
    "train": "#4c72b0",
    "upload": "#dd8452",
    "aggregate": "#c44e52",
    "download": "#55a868",
    "other": "#b0b0b0",
}
STATE_COLOURS = {
    "succeeded": "#4c72b0",
    "running": "#8fb0d9",
    "pending": "#d0d0d0",
    "failed": "#c44e52",
    "timed_out": "#e08a2c",
    "out_of_memory": "#8c2d9e",
    "cancelled": "#9a9a9a",
}
DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def loss_figure(curve: LossCurve, test_accuracy: float | None) -> bytes:
    """Training loss against iteration and against wall time, with the final test accuracy."""
    fig = Figure(figsize=(10, 3.6))
    by_it, by_time = fig.subplots(1, 2)
    if curve.iterations:
        by_it.plot(curve.iterations, curve.losses, ".-", color="#4c72b0", linewidth=1, markersize=3)
        by_it.set_xlabel("iteration")
        by_it.set_ylabel("training loss (worker 0)")
        by_it.grid(True, alpha=0.3)
        if curve.wall_s is not None:
            by_time.plot(
                curve.wall_s, curve.losses, ".-", color="#4c72b0", linewidth=1, markersize=3
            )
            by_time.set_xlabel("seconds since the first invocation")
            by_time.set_ylabel("training loss (worker 0)")
            by_time.grid(True, alpha=0.3)
        else:
            _empty(by_time, "these logs carry no wall-clock times")
    else:
        _empty(by_it, "no iteration logged yet")
        _empty(by_time, "no iteration logged yet")
    acc = "n/a" if test_accuracy is None else f"{100 * test_accuracy:.2f} %"
    by_it.set_title("Loss by iteration")
    by_time.set_title(f"Loss by wall time  (final test accuracy {acc})")
    return _png(fig)


def phases_figure(stats: Mapping[str, IterationStats]) -> bytes:
    """Mean seconds per iteration split into phases, one bar per role (stacked)."""
    fig = Figure(figsize=(10, 1.2 + 0.9 * max(1, len(stats))))
    ax = fig.subplots()
    if not stats:
        _empty(ax, "no iteration logged yet")
        return _png(fig)
    names = list(stats)
    for row, name in enumerate(names):
        left = 0.0
        s = stats[name]
        for phase in PHASES:
            width = max(0.0, getattr(s, phase))
            ax.barh(row, width, left=left, color=PHASE_COLOURS[phase], height=0.6)
            left += width
        ax.text(left, row, f"  {1000 * s.iteration:.1f} ms", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("mean seconds per iteration")
    ax.set_title("Time per iteration by phase")
    ax.legend(
        handles=[Patch(color=PHASE_COLOURS[p], label=p) for p in PHASES],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    ax.margins(x=0.15)
    return _png(fig)


def timeline_figure(spans: Sequence[Span], num_workers: int) -> bytes:
    """One row per worker, one bar per invocation, coloured by how it ended; failed attempts
    hatched, each round labelled."""
    fig = Figure(figsize=(10, 1.4 + 0.45 * num_workers))
    ax = fig.subplots()
    if not spans:
        _empty(ax, "no invocation recorded yet (the coordinator writes them when the job stops)")
        return _png(fig)
    for sp in spans:
        ax.barh(
            sp.worker,
            max(sp.end_s - sp.start_s, 1e-3),
            left=sp.start_s,
            height=0.6,
            color=STATE_COLOURS.get(sp.state, "#777777"),
            hatch="///" if sp.failed_attempt else None,
            edgecolor="white" if not sp.failed_attempt else "black",
            linewidth=0.5,
        )
        if sp.state not in ("succeeded", "cancelled", "running", "pending"):
            ax.plot(sp.end_s, sp.worker, marker="x", color="black", markersize=9)
        label = f"r{sp.round}" + (f" a{sp.attempt}" if sp.failed_attempt else "")
        ax.text(
            (sp.start_s + sp.end_s) / 2,
            sp.worker,
            label,
            ha="center",
            va="center",
            fontsize=7,
            color="white",
        )
    ax.set_yticks(range(num_workers), [f"worker {w}" for w in range(num_workers)])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first invocation")
    ax.set_title(
        "Invocations (r: round, a: attempt; hatched: a failed attempt; x: where it failed)"
    )
    states = sorted({sp.state for sp in spans})
    ax.legend(
        handles=[Patch(color=STATE_COLOURS.get(s, "#777777"), label=s) for s in states],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def cost_figure(cost: CostSplit | None) -> bytes:
    """Dollars by functions and by the store's request kinds; requests per iteration by kind."""
    fig = Figure(figsize=(10, 3.4))
    dollars, per_it = fig.subplots(1, 2)
    if cost is None:
        _empty(dollars, "the job has not finished")
        _empty(per_it, "the job has not finished")
        return _png(fig)
    labels = ["functions", *(f"{k} requests" for k in cost.storage_by_kind)]
    values = [cost.functions, *cost.storage_by_kind.values()]
    colours = ["#4c72b0"] + ["#dd8452"] * len(cost.storage_by_kind)
    dollars.barh(range(len(labels)), values, color=colours)
    dollars.set_yticks(range(len(labels)), labels)
    dollars.invert_yaxis()
    dollars.set_xlabel("USD")
    dollars.set_title(f"Cost: ${cost.total:.6f}")
    for i, v in enumerate(values):
        dollars.text(v, i, f" {100 * v / cost.total:.0f} %" if cost.total else "", va="center")
    dollars.margins(x=0.2)
    kinds = list(cost.requests_per_iteration)
    per_it.bar(kinds, [cost.requests_per_iteration[k] for k in kinds], color="#dd8452")
    per_it.set_ylabel("requests per iteration")
    per_it.set_title("Store requests per iteration (all workers)")
    per_it.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def prediction_figure(prediction: PredictionCheck) -> bytes:
    """Measured over predicted, term by term (the terms mix seconds, dollars, rounds and
    requests, so each is shown as its ratio; 1 is a perfect prediction), and for the whole job's
    time and cost."""
    fig = Figure(figsize=(10, 3.6))
    ax = fig.subplots()
    rows = [
        ("job time", prediction.time_s, prediction.measured_time_s),
        ("job cost", prediction.cost_usd, prediction.measured_cost_usd),
        *((name, t.predicted, t.measured) for name, t in prediction.terms.items()),
    ]
    shown: list[tuple[str, float, float]] = [(n, p, m) for n, p, m in rows if p > 0]
    if not shown:
        _empty(ax, "the prediction has no comparable terms")
        return _png(fig)
    ratios = [m / p for _, p, m in shown]
    floor = 1e-3  # a ratio of 0 (nothing measured) is drawn at the floor of the log axis
    colours = ["#4c72b0" if i < 2 else "#8fb0d9" for i in range(len(shown))]
    # bars grow from 1 (exact) up or down, on a log axis: x2 and /2 look alike
    heights = [max(r, floor) for r in ratios]
    ax.bar(range(len(shown)), [h - 1 for h in heights], bottom=1.0, color=colours)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(shown)), [n for n, _, _ in shown], rotation=20, fontsize=8)
    for i, (r, h) in enumerate(zip(ratios, heights, strict=True)):
        ax.text(i, h, f"{r:.2g}", ha="center", va="bottom" if r >= 1 else "top", fontsize=8)
    ax.set_ylabel("measured / predicted (log)")
    ax.set_title("Plan against measurement (1 = exact; the table below gives the values)")
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)

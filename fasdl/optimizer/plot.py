"""``--plot``: the cheapest cost within each deadline, for K-Reduce, ScatterReduce and AllReduce."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fasdl.optimizer.search import Frontier

STYLES = {"K-Reduce": "-", "ScatterReduce": "--", "AllReduce": ":"}


def deadline_axis(frontiers: dict[str, Frontier], points: int = 400) -> np.ndarray:
    """Deadlines from the fastest plan of any pattern to past the slowest frontier point."""
    times = np.concatenate([f.time_s for f in frontiers.values() if len(f)] or [np.array([1.0])])
    return np.geomspace(times.min(), times.max() * 1.5, points)


def plot_frontiers(
    path: str | Path,
    frontiers: dict[str, Frontier],
    deadline_s: float | None = None,
    title: str = "",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deadlines = deadline_axis(frontiers)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, frontier in frontiers.items():
        if len(frontier):
            ax.step(
                deadlines / 3600,
                frontier.cost_at(deadlines),
                STYLES.get(name, "-"),
                where="post",
                label=name,
            )
    if deadline_s is not None:
        ax.axvline(deadline_s / 3600, color="grey", linewidth=0.8, label="deadline")
    ax.set_xscale("log")
    ax.set_xlabel("deadline (hours)")
    ax.set_ylabel("cheapest predicted cost (USD)")
    ax.set_title(title or "Cost of the cheapest plan within each deadline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

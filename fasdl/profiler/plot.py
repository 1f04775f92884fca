"""The fit's figure: measured points and fitted curves. Uses matplotlib's Agg canvas directly, so
it needs no display and leaves pyplot's global state alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fasdl.profiler.fit import ProfileFit
from fasdl.profiler.records import ProfileSample


def plot_fit(
    samples: Sequence[ProfileSample], fit: ProfileFit, path: str | Path, title: str = ""
) -> None:
    """Left: train time against batch size, one colour per memory size. Right: trans time
    against memory. Runs that ran out of memory or failed are marked on the batch axis."""
    ok = [s for s in samples if s.ok]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)

    memories = sorted({s.memory_mb for s in samples})
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, max(len(memories), 1)))
    b_all = np.array([s.batch_size for s in samples], dtype=float)
    b_grid = np.linspace(b_all.min(), b_all.max(), 100)
    for colour, memory in zip(colours, memories, strict=True):
        here = [s for s in ok if s.memory_mb == memory]
        left.plot(b_grid, fit.train.predict(b_grid, memory), color=colour, lw=1.2)
        if here:
            left.plot(
                [s.batch_size for s in here],
                [s.train_s for s in here],
                "o",
                color=colour,
                label=f"{memory} MB",
            )
        failed = [s.batch_size for s in samples if s.memory_mb == memory and not s.ok]
        if failed:
            left.plot(failed, [0.0] * len(failed), "x", color=colour, ms=8)
    left.set_xlabel("batch size B")
    left.set_ylabel("training time per iteration (s)")
    f = fit.train
    left.set_title(
        f"T_train = {f.a:.4g}·(B + {f.b:.4g})/(M + {f.m:.4g})\n"
        f"R² {f.stats.r2:.3f}, MAPE {f.stats.mape_pct:.1f} % (leave-one-out {f.stats.loo_mape_pct:.1f} %)",
        fontsize=9,
    )
    left.legend(fontsize=8, title="memory (× = out of memory/failed)", title_fontsize=8)

    m_ok = np.array([s.memory_mb for s in ok], dtype=float)
    m_grid = np.geomspace(m_ok.min(), m_ok.max(), 100)
    right.plot(m_ok, [s.trans_s for s in ok], "o", color="tab:blue", label="measured")
    right.plot(m_grid, fit.trans.predict(m_grid), color="tab:orange", label="fit")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("memory M (MB)")
    right.set_ylabel("transformation time (s)")
    g = fit.trans
    right.set_title(
        f"T_trans = {g.k1:.4g}·M^{g.k2:.3f}\n"
        f"R² {g.stats.r2:.3f}, MAPE {g.stats.mape_pct:.1f} % (leave-one-out {g.stats.loo_mape_pct:.1f} %)",
        fontsize=9,
    )
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)

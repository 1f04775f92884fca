"""``fasdl fit``: fit the performance model to a profile and write coeffs.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fasdl.errors import InvalidInput
from fasdl.perf.transfer import PRESETS

if TYPE_CHECKING:  # scipy and matplotlib load only when `fasdl fit` runs, not for every command
    from fasdl.profiler.fit import FitStats
    from fasdl.profiler.fit_report import FitReport

EPILOG = """\
models (the seed's): T_train = a·(B + b)/(M + m), T_trans = k1·M^k2, with B the batch size and
M the function's memory in MB. Only runs whose status is "ok" are fitted.

examples:
  fasdl fit profile.csv --out coeffs.json --plot fit.png
  fasdl fit profiling.txt --model-size-mb 44.6 --out coeffs.json --transfer aws
  fasdl fit profile.csv --out coeffs.json --transfer storage.csv --json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fit",
        help="fit the performance model to a profile and write coeffs.json",
        description="Fit T_train and T_trans to a profile (our CSV or the seed's profiling.txt), "
        "report R² and MAPE (measured and leave-one-out), and write coeffs.json for the optimizer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "profile", help="the CSV that `fasdl profile` wrote, or the seed's profiling.txt"
    )
    p.add_argument(
        "--out", required=True, metavar="COEFFS_JSON", help="where to write the coefficients"
    )
    p.add_argument("--plot", metavar="PNG", help="also draw the points and fitted curves")
    p.add_argument(
        "--transfer",
        metavar="PRESET_OR_CSV",
        help=f"the store's transfer times: a preset ({', '.join(PRESETS)}) put in as is, or a transfer "
        "CSV (memory_mb,object_mb,upload_s,download_s,samples) to fit; the better model on held-out "
        "points is kept",
    )
    p.add_argument(
        "--model-size-mb",
        type=float,
        metavar="MB",
        help="size of the model's parameters (overrides the profile)",
    )
    p.add_argument(
        "--num-params",
        type=int,
        metavar="N",
        help="number of the model's parameters (overrides the profile)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fasdl.perf.coefficients import write_coefficients
    from fasdl.profiler.fit_report import fit_files

    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if path and not Path(path).resolve().parent.is_dir():
            raise InvalidInput(flag, f"the directory of {path!r} does not exist", "create it first")
    report = fit_files(
        args.profile,
        transfer=args.transfer,
        model_size_mb=args.model_size_mb,
        num_params=args.num_params,
    )
    if args.plot:
        from fasdl.profiler.plot import plot_fit

        plot_fit(
            report.profile.samples,
            report.fit,
            args.plot,
            title=report.profile.model or report.profile.source,
        )
    write_coefficients(args.out, report.coeffs)
    for w in report.warnings:
        print(f"fasdl fit: warning: {w}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {**report.to_dict(), "out": args.out, "plot": args.plot}, indent=2, allow_nan=False
            )
        )
    else:
        print(format_report(report, args.out, args.plot))
    return 0


def format_report(report: FitReport, out: str, plot: str | None) -> str:
    p, c, f = report.profile, report.coeffs, report.fit
    model = ", ".join(
        x
        for x in (
            p.model,
            f"{c.model_size_mb:g} MB" if c.model_size_mb is not None else "model size unknown",
            f"{c.num_params:,} parameters" if c.num_params is not None else "",
        )
        if x
    )
    skipped = f", {f.runs_skipped} skipped (out of memory or failed)" if f.runs_skipped else ""
    lines = [
        f"profile  {p.source} ({p.format}): {len(p.samples)} runs, {f.runs_used} fitted{skipped}; {model}",
        "",
        "train    T_train = a·(B + b)/(M + m)",
        f"         a = {c.a:.6g}   b = {c.b:.6g}   m = {c.m:.6g}",
        _stats_line(f.train.stats),
        "trans    T_trans = k1·M^k2",
        f"         k1 = {c.k1:.6g}   k2 = {c.k2:.6g}",
        _stats_line(f.trans.stats),
    ]
    if c.min_memory_mb is not None:
        lines.append(
            f"memory   {c.min_memory_mb} MB: the smallest that ran without running out of memory"
        )
    if c.max_memory_mb is not None and c.max_memory_mb != c.min_memory_mb:
        lines.append(
            f"         {c.max_memory_mb} MB: the largest profiled (above it the fit extrapolates)"
        )
    if c.startup_cpu_s is not None or c.startup_fixed_s is not None:
        lines += [
            "job      start-up = fixed + cpu/vCPUs(M); spread of one iteration = cv + cv_cpu/vCPUs(M)",
            f"         fixed = {c.startup_fixed_s or 0:.3g} s   cpu = {c.startup_cpu_s or 0:.3g} s   "
            f"cv = {c.train_cv or 0:.3g}   cv_cpu = {c.train_cv_cpu or 0:.3g}   "
            f"evaluation {1e3 * (c.eval_s_per_sample or 0):.3g} ms/sample "
            f"+ {c.eval_fixed_s or 0:.3g} s   data upload {c.data_upload_s or 0:.3g} s",
        ]
    else:
        lines.append(
            "job      no start-up times in this profile (written before fasdl profile measured "
            "them): the optimizer predicts the training loop only; profile again for the whole job"
        )
    if report.transfer is not None:
        t = report.transfer
        kept = (
            "latency + size/bandwidth fit"
            if t.chosen == "latency_bandwidth"
            else "table interpolation"
        )
        lines += [
            f"transfer {report.transfer_source}: kept the {kept}",
            f"         held-out MAPE: fit {t.fit_heldout_mape_pct:.1f} %, table {t.table_heldout_mape_pct:.1f} % "
            f"({t.heldout_points} points, each size left out in turn)",
        ]
    elif report.transfer_source is not None:
        lines.append(
            f"transfer preset {report.transfer_source} (table measured on AWS Lambda against S3)"
        )
    lines += ["", f"wrote    {out}" + (f" and {plot}" if plot else "")]
    return "\n".join(lines)


def _stats_line(s: FitStats) -> str:
    loo = f"{s.loo_mape_pct:.1f} %" if s.loo_points else "n/a"
    return (
        f"         R² {s.r2:.4f}   MAPE {s.mape_pct:.1f} % on {s.points} points, "
        f"{loo} leave-one-out ({s.loo_points} points)"
    )

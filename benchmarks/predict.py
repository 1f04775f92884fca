"""Predicted against measured: the optimizer's time and cost of a plan next to a real run of it.

On the local platform with a file store: profile the small CNN (``fasdl profile``, with the
store's transfer profile), fit (``fasdl fit``), optimise for a few deadlines (``fasdl optimize``)
and train each plan (``fasdl train --plan``), then print the plan, the predicted and measured
time and cost, and the accuracy 1 - |predicted - measured| / measured. The FasDL paper reports
above 94 % on AWS Lambda.

Which measured time is comparable. The model predicts the training iterations only:
I x T_iter, T_iter being an aggregator's critical path (train, transform, upload, gather and
merge, download). The comparable figure is aggregator 0's training loop, the sum of the
``iteration_s`` in its per-iteration logs (``output/<job>/logs/``). The job's wall time adds
what the model leaves out: starting the functions (a process, the torch import, the data), the
coordinator's partitioning and start barrier, and the final evaluation. Both are printed.
The comparable cost is W x M x (loop time) at the GB-second price, plus the invocations, plus
every store request counted; the billed cost is what the job was charged (each function's whole
billed duration, start-up included).

This machine has few cores and the local platform gives a function M/1769 vCPUs, so a plan is
only timed faithfully when its functions fit: W x M / 1769 <= --vcpus (default: the cores), the
optimizer's --max-vcpus. Each chosen plan is written by ``fasdl optimize --max-vcpus``, as a user
would. Deadlines are chosen on that
constrained Pareto frontier, among the plans predicted to train within --max-run-s (so that a
full run stays near ten minutes): the fastest, the cheapest, and one between when there is one;
when there are fewer than three, a third run restricts the functions to --small-memory MB
(more, smaller functions).

    python benchmarks/predict.py                 # 7-10 min: profile, fit, 3 plans of 10 epochs of 4,000
    python benchmarks/predict.py --quick         # ~2 min smoke run
    python benchmarks/predict.py --json          # the figures as one JSON object
    python benchmarks/predict.py --profile P.csv --transfer T.csv   # reuse a profile

Results go to benchmarks/results/predict-<time>.json and .csv. The load average and the cores
other processes keep busy are recorded around every job: other load on the cores slows the
functions and lowers the accuracy, so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.logs import iteration_stats, loop_s, mean_stats, read_worker_logs, straggler_s
from fasdl.optimizer.accuracy import Measured, comparable_cost_usd, compare
from fasdl.optimizer.points import FrontierPoint, choose_runs, frontier_points
from fasdl.platform.limits import MB_PER_VCPU, vcpus_for_memory
from fasdl.store import open_store

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODEL = "cnn"
STEP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Settings:
    memory_mb: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    iterations: int
    sample_s: float
    sizes_mb: tuple[float, ...]
    storage_repeats: int
    samples: int
    epochs: int


FULL = Settings(
    memory_mb=(442, 885, 1769),
    # The aggregators' batch B = ceil(γ·b/(1-γ)) comes out at 5-9 for this CNN and A near it:
    # profile around the batches the plans use.
    batch_sizes=(8, 16, 32),
    iterations=5,
    sample_s=0.5,
    # The CNN's vector is 0.12 MB: chunks of 0.01-0.12 MB are what K-Reduce moves.
    sizes_mb=(0.01, 0.03, 0.1, 0.3, 1.0),
    storage_repeats=5,
    samples=4000,
    epochs=10,
)
QUICK = Settings(
    memory_mb=(885, 1769),
    batch_sizes=(8, 32),
    iterations=2,
    sample_s=0.2,
    sizes_mb=(0.01, 0.1, 1.0),
    storage_repeats=2,
    samples=1000,
    epochs=2,
)


# -- running the CLI ---------------------------------------------------------------------------


def fasdl(args: list[str], *, log: list[dict[str, Any]], capture: bool = True) -> tuple[str, float]:
    """Run ``fasdl ARGS`` (as ``python -m fasdl.cli.main``); return stdout and seconds."""
    shown = "fasdl " + shlex.join(args)
    print(f"$ {shown}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fasdl.cli.main", *args],
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    seconds = time.monotonic() - t0
    log.append({"command": shown, "exit_code": proc.returncode, "seconds": round(seconds, 2)})
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise StepFailed(f"{shown} exited {proc.returncode}:\n{tail}")
    return proc.stdout or "", seconds


class StepFailed(RuntimeError):
    pass


def _exact(x: float) -> str:
    """``x`` for a command line: as ``:g`` writes it unless that rounds it (a deadline rounded
    down can fall below its plan's time, and then ``fasdl optimize`` finds no plan)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def load_avg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def busy_cores(seconds: float = 2.0) -> float | None:
    """Cores kept busy by everything else on the machine, from /proc/stat over ``seconds``.

    Taken just before a job starts, when none of its processes run: the CPU the functions will
    have to share (the load average counts the job's own functions too)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        return sum(v[:8]) - idle, sum(v[:8])

    try:
        b0, t0 = sample()
        time.sleep(seconds)
        b1, t1 = sample()
    except OSError:
        return None
    return round((b1 - b0) / (t1 - t0) * (os.cpu_count() or 1), 2) if t1 > t0 else None


# -- the constrained frontier ------------------------------------------------------------------


def constrained_frontier(
    coeffs_path: Path,
    *,
    samples: int,
    epochs: int,
    vcpus: float,
    min_memory_mb: int,
    max_memory_mb: int,
    memory_step_mb: int,
) -> list[FrontierPoint]:
    """The Pareto frontier (time ascending, cost descending) within the vCPU cap, as the CLI sees it."""
    from fasdl.optimizer import Scenario, memory_grid, search_space
    from fasdl.optimizer.search import improved_frontier
    from fasdl.perf.coefficients import read_coefficients
    from fasdl.pricing import load_prices

    coeffs = read_coefficients(coeffs_path)
    transfer = coeffs.transfer_model()
    assert transfer is not None, "coeffs.json was fitted with --transfer"
    scenario = Scenario(
        coeffs=coeffs, prices=load_prices("aws"), samples=samples, epochs=epochs, max_vcpus=vcpus
    )
    grid = search_space(
        scenario, transfer, memory_grid(min_memory_mb, max_memory_mb, memory_step_mb)
    )
    f, _ = improved_frontier(scenario, grid)
    return frontier_points(f, max_memory_mb=max_memory_mb)


# -- what the job measured ---------------------------------------------------------------------


def measure_plan(
    label: str,
    point: FrontierPoint,
    deadline_s: float,
    *,
    coeffs: Path,
    settings: Settings,
    workdir: Path,
    store_url: str,
    index: int,
    log: list[dict[str, Any]],
    min_memory_mb: int,
    memory_step_mb: int,
    vcpus: float,
) -> dict[str, Any]:
    from fasdl.pricing import load_prices

    plan_path = workdir / f"plan-{index}.json"
    out, _ = fasdl(
        [
            "optimize",
            "--coeffs",
            str(coeffs),
            "--epochs",
            str(settings.epochs),
            "--samples",
            str(settings.samples),
            "--deadline",
            _exact(deadline_s),
            "--min-memory",
            str(min_memory_mb),
            "--max-memory",
            str(point.max_memory_mb),
            "--memory-step",
            str(memory_step_mb),
            "--max-vcpus",
            f"{vcpus:g}",
            "--json",
        ],
        log=log,
    )
    plan_path.write_text(out)
    plan = json.loads(out)
    got = (plan["num_workers"], plan["pattern_k"], plan["memory"])
    if got != point.config:
        print(
            f"warning: fasdl optimize chose W,K,M={got}, the frontier said {point.config}",
            file=sys.stderr,
        )
    W, K, M = got
    job_id = f"predict-{time.strftime('%Y%m%d-%H%M%S')}-{index}"
    background_cores = busy_cores()
    load_before = load_avg()
    out, cli_s = fasdl(
        [
            "train",
            "--plan",
            str(plan_path),
            "--model",
            MODEL,
            "--dataset",
            f"synthetic:{settings.samples}",
            "--store",
            store_url,
            "--job-id",
            job_id,
            "--json",
            "--no-progress",
        ],
        log=log,
    )
    load_after = load_avg()
    summary = json.loads(out)
    keys = Keys.for_job(JobConfig.from_dict(summary["config"]))
    logs = read_worker_logs(open_store(store_url), keys)

    agg0 = iteration_stats(logs[0])
    non_aggs = mean_stats([iteration_stats(logs[w]) for w in sorted(logs) if w >= K])
    loop = loop_s(logs[0])  # aggregator 0's training loop: what the model predicts
    measured = Measured(
        loop_s=loop,
        wall_s=summary["wall_time_s"],
        cost_comparable_usd=comparable_cost_usd(
            load_prices("aws"),
            num_workers=W,
            memory_mb=M,
            loop_s=loop,
            invocations=summary["invocations"],
            storage_usd=summary["cost_usd"]["storage"],
        ),
        cost_billed_usd=summary["cost_usd"]["total"],
    )
    b = plan["breakdown"]
    predicted_iteration = dict(b["per_iteration_s"], iteration=b["iteration_s"])
    return {
        "label": label,
        "deadline_s": deadline_s,
        "job_id": job_id,
        "plan": {
            "num_workers": W,
            "pattern_k": K,
            "memory": M,
            "batch_size_agg": plan["batch_size_agg"],
            "batch_size_wor": plan["batch_size_wor"],
            "global_batch": b["global_batch"],
            "max_memory": point.max_memory_mb,
            "vcpus": round(vcpus_for_memory(M) * W, 3),
        },
        "predicted": {
            "time_s": plan["predicted_time_s"],
            "cost_usd": plan["predicted_cost_usd"],
            "iterations": b["iterations"],
            "per_iteration_s": predicted_iteration,
            "requests": b["requests"],
            "cost_breakdown_usd": b["cost_usd"],
        },
        "measured": {
            "loop_s": measured.loop_s,
            "wall_s": measured.wall_s,
            "cli_s": round(cli_s, 3),
            "iterations": summary["iterations"],
            "cost_comparable_usd": measured.cost_comparable_usd,
            "cost_billed_usd": measured.cost_billed_usd,
            "cost_usd": summary["cost_usd"],
            "billed_gb_s": summary["billed_gb_s"],
            "invocations": summary["invocations"],
            "requests": summary["requests"],
            "per_iteration_s": {
                "aggregator_0": agg0.to_dict(),
                "non_aggregators_mean": non_aggs.to_dict() if non_aggs else None,
            },
            # How long aggregator 0 waits for the slowest worker's training per iteration.
            "straggler_s": straggler_s(logs),
            "startup_and_coordinator_s": measured.wall_s - measured.loop_s,
            "test_accuracy": summary["test_accuracy"],
            "final_loss": summary["final_loss"],
        },
        "accuracy": compare(
            predicted_time_s=plan["predicted_time_s"],
            predicted_cost_usd=plan["predicted_cost_usd"],
            measured=measured,
        ).to_dict(),
        "load_avg_1min": {"before": load_before, "after": load_after},
        "background_busy_cores": background_cores,
    }


# -- the report ---------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f} %" if x is not None else "n/a"


def format_report(report: dict[str, Any]) -> str:
    s = report["settings"]
    fit = report["fit"]
    lines = [
        f"{MODEL} on synthetic:{s['samples']}, {s['epochs']} epochs; local platform, file store; "
        f"plans with W x M / {MB_PER_VCPU} <= {report['vcpus']:g} vCPUs",
        f"fit: T_train R² {fit['train']['r2']:.4f}, LOO MAPE {fit['train']['loo_mape_pct']:.1f} %; "
        f"T_trans R² {fit['trans']['r2']:.3f}; transfer: {fit['transfer_chosen']}; "
        f"B = {report['batch_size_agg']} (γ 0.8)",
        "",
        "                          plan                 predicted         measured: loop / wall, cost comparable / billed          accuracy: time loop / wall, cost cmp / billed",
        f"{'run':<18} {'W':>2} {'K':>2} {'M':>5} {'B':>3} {'A':>3} {'I':>5}  {'time s':>7} {'cost $':>8}  "
        f"{'loop s':>7} {'wall s':>7} {'cmp $':>8} {'billed $':>8}  {'t loop':>7} {'t wall':>7} {'$ cmp':>7} {'$ bill':>7}  load (busy)",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"{r['label']:<18} failed: {r['error'].splitlines()[0]}")
            continue
        p, pr, me, ac = r["plan"], r["predicted"], r["measured"], r["accuracy"]
        lines.append(
            f"{r['label']:<18} {p['num_workers']:>2} {p['pattern_k']:>2} {p['memory']:>5} "
            f"{p['batch_size_agg']:>3} {p['batch_size_wor']:>3} {me['iterations']:>5}  "
            f"{pr['time_s']:>7.1f} {pr['cost_usd']:>8.5f}  {me['loop_s']:>7.1f} {me['wall_s']:>7.1f} "
            f"{me['cost_comparable_usd']:>8.5f} {me['cost_billed_usd']:>8.5f}  "
            f"{_pct(ac['time_loop']):>7} {_pct(ac['time_wall']):>7} {_pct(ac['cost_comparable']):>7} "
            f"{_pct(ac['cost_billed']):>7}  {r['load_avg_1min']['before']}-{r['load_avg_1min']['after']}"
            f" ({r.get('background_busy_cores')})"
        )
    lines += [
        "",
        "per iteration, ms (mean)  train  transf  upload  aggr.  downl.  other   total  | median total  p90",
    ]
    for r in report["runs"]:
        if "error" in r:
            continue
        pi = r["predicted"]["per_iteration_s"]
        a0 = r["measured"]["per_iteration_s"]["aggregator_0"]
        na = r["measured"]["per_iteration_s"]["non_aggregators_mean"]
        lines.append(
            f"{r['label'][:10]:<10} predicted  {1e3 * pi['train']:>6.1f} {1e3 * pi['transform']:>7.2f} "
            f"{1e3 * pi['upload']:>7.2f} {1e3 * pi['aggregate']:>6.2f} {1e3 * pi['download']:>7.2f} "
            f"{'':>6} {1e3 * pi['iteration']:>7.1f}"
        )
        for name, d in (("aggr. 0", a0), ("non-aggr.", na)):
            if d is None:
                continue
            lines.append(
                f"{'':<10} {name:<10} {1e3 * d['train']:>6.1f} {'-':>7} {1e3 * d['upload']:>7.2f} "
                f"{1e3 * d['aggregate']:>6.2f} {1e3 * d['download']:>7.2f} {1e3 * d['other']:>6.2f} "
                f"{1e3 * d['iteration']:>7.1f}  | {1e3 * d['median_iteration']:>7.1f} {1e3 * d['p90_iteration']:>7.1f}"
            )
    lines += [
        "",
        "measured - predicted, ms per iteration (aggregator 0); straggler = mean over iterations of",
        "max(train of any worker) - its own; start-up = wall - loop",
        f"{'run':<18} {'total':>6} {'train':>7} {'aggr.':>6} {'up+down+other':>14} {'straggler':>10}",
    ]
    for r in report["runs"]:
        if "error" in r:
            continue
        pi = r["predicted"]["per_iteration_s"]
        me = r["measured"]
        a0 = me["per_iteration_s"]["aggregator_0"]
        rest = (
            a0["upload"]
            + a0["download"]
            + a0["other"]
            - pi["upload"]
            - pi["download"]
            - pi["transform"]
        )
        lines.append(
            f"{r['label'][:18]:<18} {1e3 * (a0['iteration'] - pi['iteration']):>+6.1f} "
            f"{1e3 * (a0['train'] - pi['train']):>+7.1f} "
            f"{1e3 * (a0['aggregate'] - pi['aggregate']):>+6.1f} {1e3 * rest:>+14.2f} "
            f"{1e3 * me['straggler_s']:>10.1f}   start-up {me['startup_and_coordinator_s']:.1f} s"
        )
    lines += [
        "",
        "requests     predicted PUT/GET/DELETE      measured PUT/GET/DELETE/LIST/HEAD   (measured includes polling and the coordinator)",
    ]
    for r in report["runs"]:
        if "error" in r:
            continue
        pq, mq = r["predicted"]["requests"], r["measured"]["requests"]
        lines.append(
            f"{r['label'][:18]:<18} {pq.get('PUT', 0):>7,} {pq.get('GET', 0):>7,} {pq.get('DELETE', 0):>6,}"
            f"      {mq.get('PUT', 0):>7,} {mq.get('GET', 0):>7,} {mq.get('DELETE', 0):>6,} "
            f"{mq.get('LIST', 0):>5,} {mq.get('HEAD', 0):>5,}"
        )
    lines += [
        "",
        "loop = aggregator 0's training loop (sum of iteration_s in its logs), the figure the model "
        "predicts; wall = the job's wall time (start-up, barrier, evaluation included).",
        "load = 1-min load average before-after the job (it counts the job's own functions); busy = "
        "cores other processes kept busy just before it.",
        "cost cmp = W·M·loop at the GB-s price + invocations + all store requests; billed = the job's "
        "cost (whole billed durations).",
        f"{report['cpu_count']} cores; load average {report['load_avg_1min']['start']} at the start, "
        f"{report['load_avg_1min']['end']} at the end; {report['wall_s']:.0f} s in all",
    ]
    return "\n".join(lines)


def write_results(report: dict[str, Any], stem: str) -> tuple[Path, Path]:
    RESULTS.mkdir(exist_ok=True)
    jpath, cpath = RESULTS / f"{stem}.json", RESULTS / f"{stem}.csv"
    jpath.write_text(json.dumps(report, indent=2) + "\n")
    fields = [
        "label",
        "num_workers",
        "pattern_k",
        "memory",
        "batch_size_agg",
        "batch_size_wor",
        "deadline_s",
        "predicted_time_s",
        "predicted_cost_usd",
        "iterations",
        "loop_s",
        "wall_s",
        "cost_comparable_usd",
        "cost_billed_usd",
        "acc_time_loop",
        "acc_time_wall",
        "acc_cost_comparable",
        "acc_cost_billed",
        "load_before",
        "load_after",
        "background_busy_cores",
    ]
    with cpath.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=fields)
        out.writeheader()
        for r in report["runs"]:
            if "error" in r:
                continue
            p, pr, me, ac = r["plan"], r["predicted"], r["measured"], r["accuracy"]
            out.writerow(
                {
                    "label": r["label"],
                    **{k: p[k] for k in fields[1:6]},
                    "deadline_s": r["deadline_s"],
                    "predicted_time_s": pr["time_s"],
                    "predicted_cost_usd": pr["cost_usd"],
                    "iterations": me["iterations"],
                    "loop_s": me["loop_s"],
                    "wall_s": me["wall_s"],
                    "cost_comparable_usd": me["cost_comparable_usd"],
                    "cost_billed_usd": me["cost_billed_usd"],
                    "acc_time_loop": ac["time_loop"],
                    "acc_time_wall": ac["time_wall"],
                    "acc_cost_comparable": ac["cost_comparable"],
                    "acc_cost_billed": ac["cost_billed"],
                    "load_before": r["load_avg_1min"]["before"],
                    "load_after": r["load_avg_1min"]["after"],
                    "background_busy_cores": r.get("background_busy_cores"),
                }
            )
    return jpath, cpath


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small profile and job (smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--vcpus",
        type=float,
        default=float(os.cpu_count() or 2),
        help="CPU the functions of one plan may use at once, W x M / 1769 (default: the cores)",
    )
    parser.add_argument(
        "--small-memory",
        type=int,
        default=885,
        metavar="MB",
        help="memory cap of the third run when the frontier has fewer than 3 plans (default 885)",
    )
    parser.add_argument(
        "--memory-step",
        type=int,
        default=64,
        metavar="MB",
        help="optimizer memory step (default 64)",
    )
    parser.add_argument(
        "--max-run-s",
        type=float,
        default=120,
        metavar="S",
        help="only plans predicted to train within S seconds (default 120), to bound the run",
    )
    parser.add_argument("--samples", type=int, help="training samples (default 4000, --quick 1000)")
    parser.add_argument("--epochs", type=int, help="epochs (default 10, --quick 2)")
    parser.add_argument(
        "--profile", type=Path, metavar="CSV", help="reuse this profile (with --transfer)"
    )
    parser.add_argument("--transfer", type=Path, metavar="CSV", help="reuse this transfer profile")
    parser.add_argument(
        "--workdir", type=Path, help="profile, coeffs, plans and the store (default: a temp dir)"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args(argv)
    if (args.profile is None) != (args.transfer is None):
        parser.error("--profile and --transfer go together")
    base = QUICK if args.quick else FULL
    settings = Settings(
        **{
            **base.__dict__,
            "samples": args.samples or base.samples,
            "epochs": args.epochs or base.epochs,
        }
    )
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="fasdl-predict-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    store_url = (workdir / "store").as_uri()
    started = time.monotonic()
    load_start = load_avg()
    log: list[dict[str, Any]] = []
    min_memory_mb = min(settings.memory_mb)
    max_memory_mb = max(settings.memory_mb)

    profile, transfer = args.profile, args.transfer
    if profile is None:
        profile, transfer = workdir / "profile.csv", workdir / "transfer.csv"
        for p in (profile, transfer):
            p.unlink(missing_ok=True)
        fasdl(
            [
                "profile",
                "--model",
                MODEL,
                "--dataset",
                f"synthetic:{settings.samples}",
                "--memory",
                ",".join(map(str, settings.memory_mb)),
                "--batch",
                ",".join(map(str, settings.batch_sizes)),
                "--iterations",
                str(settings.iterations),
                "--sample-s",
                f"{settings.sample_s:g}",
                "--store",
                store_url,
                "--out",
                str(profile),
                "--storage",
                "--storage-out",
                str(transfer),
                "--sizes",
                ",".join(f"{s:g}" for s in settings.sizes_mb),
                "--storage-repeats",
                str(settings.storage_repeats),
                "--no-progress",
            ],
            log=log,
        )
    else:
        min_memory_mb = min(int(r["memory_mb"]) for r in csv.DictReader(profile.open()))
        max_memory_mb = max(int(r["memory_mb"]) for r in csv.DictReader(profile.open()))
    coeffs = workdir / "coeffs.json"
    out, _ = fasdl(
        ["fit", str(profile), "--transfer", str(transfer), "--out", str(coeffs), "--json"], log=log
    )
    fit = json.loads(out)

    frontier_args = dict(
        samples=settings.samples,
        epochs=settings.epochs,
        vcpus=args.vcpus,
        min_memory_mb=min_memory_mb,
        memory_step_mb=args.memory_step,
    )
    full = constrained_frontier(coeffs, max_memory_mb=max_memory_mb, **frontier_args)
    small = None
    if len(full) < 3 and args.small_memory >= min_memory_mb:
        small = constrained_frontier(
            coeffs, max_memory_mb=min(args.small_memory, max_memory_mb), **frontier_args
        )
    if not full:
        raise StepFailed("no plan fits the vCPU budget: lower --min-memory or raise --vcpus")
    runs = choose_runs(full, small, small_memory_mb=args.small_memory, max_run_s=args.max_run_s)
    if not runs:
        raise StepFailed(
            f"the fastest plan is predicted to take {full[0].time_s:.0f} s, over --max-run-s "
            f"{args.max_run_s:g}: lower --samples or --epochs"
        )

    results = []
    for i, run in enumerate(runs):
        label, point, deadline_s = run.label, run.point, run.deadline_s
        try:
            results.append(
                measure_plan(
                    label,
                    point,
                    deadline_s,
                    coeffs=coeffs,
                    settings=settings,
                    workdir=workdir,
                    store_url=store_url,
                    index=i,
                    log=log,
                    min_memory_mb=min_memory_mb,
                    memory_step_mb=args.memory_step,
                    vcpus=args.vcpus,
                )
            )
        except (StepFailed, subprocess.TimeoutExpired, KeyError, ValueError) as e:
            print(f"{label}: {e}", file=sys.stderr)
            results.append({"label": label, "deadline_s": deadline_s, "error": str(e)})

    from fasdl.optimizer import batch_size_agg
    from fasdl.perf.coefficients import read_coefficients

    c = read_coefficients(coeffs)
    report = {
        "command": "python benchmarks/predict.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "settings": settings.__dict__,
        "vcpus": args.vcpus,
        "max_run_s": args.max_run_s,
        "cpu_count": os.cpu_count(),
        "workdir": str(workdir),
        "coeffs": {k: getattr(c, k) for k in ("a", "b", "m", "k1", "k2", "model_size_mb")},
        "batch_size_agg": batch_size_agg(c.b, 0.8),
        "fit": {
            "train": fit["train"],
            "trans": fit["trans"],
            "transfer": fit.get("transfer"),
            "transfer_chosen": (fit.get("transfer") or {}).get("chosen"),
            "warnings": fit.get("warnings", []),
        },
        "frontier": [asdict(p) for p in full],
        "frontier_small_memory": [asdict(p) for p in small] if small else None,
        "runs": results,
        "commands": log,
        "load_avg_1min": {"start": load_start, "end": load_avg()},
        "wall_s": round(time.monotonic() - started, 1),
    }
    if not args.no_save:
        stem = f"predict-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}"
        paths = write_results(report, stem)
        report["saved"] = [str(p) for p in paths]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        if "saved" in report:
            print("saved " + ", ".join(report["saved"]))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

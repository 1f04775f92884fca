"""Predicted against measured, for the whole job: the optimizer's time and cost of a plan next to
a real run of it, term by term.

On the local platform with a file store, as a user would: profile a narrow ResNet on
CIFAR-shaped data (``fasdl profile``, with the store's transfer profile and, now, each memory's
start-up, the spread of single iterations and the evaluation), fit (``fasdl fit``), price three
configurations that differ in W, K and memory (``fasdl.optimizer.plan_at``, written as the
plan ``fasdl optimize --json`` writes), train each with ``fasdl train --plan plan.json --json``
and read its ``prediction``: the predicted and measured time and cost, and every term.

The plans (B = 16 through γ; A from the model), all within W x M / 1769 <= 2 vCPUs:

    two      W=2 K=1 M=1769             AllReduce-like: one aggregator
    four     W=4 K=2 M=885              K-Reduce with two aggregators, small functions
    rounds   W=3 K=3 M=1152, 18 s limit ScatterReduce, re-invoked every ~18 s (checkpoints)

    python benchmarks/predict.py              # 6-7 min: profile, fit, three jobs
    python benchmarks/predict.py --quick      # ~1.5 min smoke run (fewer samples and epochs)
    flock /tmp/fasdl-bench.lock python benchmarks/predict.py   # on a shared machine

Results go to benchmarks/results/predict-<time>.json and .txt. The load average and the cores
other processes keep busy are recorded around every job: other load on the cores slows the
functions, so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.logs import IterationLog, iteration_stats, mean_stats, read_worker_logs
from fasdl.kreduce.state import read_state
from fasdl.perf.coefficients import JOB_KEYS, REQUIRED_KEYS
from fasdl.platform.limits import MB_PER_VCPU, vcpus_for_memory
from fasdl.store import open_store

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODEL = "resnet8"
BATCH = 16  # the aggregators' batch every plan uses (γ is set from the fitted b to give it)
STEP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Config:
    label: str
    num_workers: int
    num_aggregators: int
    memory_mb: int
    func_time_s: float


CONFIGS = (
    Config("two", 2, 1, 1769, 900.0),
    Config("four", 4, 2, 885, 900.0),
    Config("rounds", 3, 3, 1152, 18.0),
)


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
    memory_mb=(885, 1152, 1769),
    batch_sizes=(16, 32, 48),
    iterations=5,
    sample_s=0.5,
    # resnet8's vector is 1.24 MB: chunks of 0.4-1.24 MB, checkpoints of ~2.5 MB
    sizes_mb=(0.1, 0.4, 1.24, 2.5),
    storage_repeats=5,
    samples=10_000,
    epochs=4,
)
QUICK = Settings(
    memory_mb=(885, 1769),
    batch_sizes=(16, 32),
    iterations=3,
    sample_s=0.3,
    sizes_mb=(0.4, 1.24, 2.5),
    storage_repeats=2,
    samples=3000,
    epochs=2,
)


def fasdl(args: list[str], *, log: list[dict[str, Any]]) -> str:
    """Run ``fasdl ARGS`` (as ``python -m fasdl.cli.main``); return its stdout."""
    shown = "fasdl " + shlex.join(args)
    print(f"$ {shown}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fasdl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    log.append(
        {"command": shown, "exit_code": proc.returncode, "seconds": round(time.monotonic() - t0, 2)}
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise StepFailed(f"{shown} exited {proc.returncode}:\n{tail}")
    return proc.stdout


class StepFailed(RuntimeError):
    pass


def load_avg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def busy_cores(seconds: float = 2.0) -> float | None:
    """Cores kept busy by everything else on the machine, from /proc/stat over ``seconds``
    (taken just before a job starts, when none of its processes run)."""

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


def write_plan(
    coeffs_path: Path, config: Config, settings: Settings, gamma: float, path: Path
) -> dict[str, Any]:
    """Price ``config`` as ``fasdl optimize`` prices its choice and write the plan JSON."""
    from fasdl.optimizer import Scenario
    from fasdl.optimizer.plan import plan_at
    from fasdl.perf.coefficients import read_coefficients
    from fasdl.pricing import load_prices

    coeffs = read_coefficients(coeffs_path)
    transfer = coeffs.transfer_model()
    assert transfer is not None, "coeffs.json was fitted with --transfer"
    scenario = Scenario(
        coeffs=coeffs,
        prices=load_prices("aws"),
        samples=settings.samples,
        epochs=settings.epochs,
        gamma=gamma,
        func_time_s=config.func_time_s,
        test_samples=max(settings.samples // 5, 10),  # synthetic:N's test set
    )
    plan = plan_at(
        scenario, transfer, config.num_workers, config.num_aggregators, config.memory_mb
    ).to_dict()
    path.write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def run_plan(
    config: Config,
    plan_path: Path,
    plan: dict[str, Any],
    *,
    settings: Settings,
    store_url: str,
    index: int,
    log: list[dict[str, Any]],
) -> dict[str, Any]:
    job_id = f"predict-{time.strftime('%Y%m%d-%H%M%S')}-{index}"
    background = busy_cores()
    load_before = load_avg()
    out = fasdl(
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
    K = config.num_aggregators
    rounds = round_timeline(open_store(store_url), keys, config.num_workers)
    aggs = mean_stats([iteration_stats(logs[w]) for w in sorted(logs) if w < K])
    non_aggs = mean_stats([iteration_stats(logs[w]) for w in sorted(logs) if w >= K])
    b = plan["breakdown"]
    return {
        "label": config.label,
        "job_id": job_id,
        "plan": {
            "num_workers": config.num_workers,
            "pattern_k": K,
            "memory": config.memory_mb,
            "func_time": config.func_time_s,
            "batch_size_agg": plan["batch_size_agg"],
            "batch_size_wor": plan["batch_size_wor"],
            "global_batch": b["global_batch"],
            "iterations": b["iterations"],
            "vcpus": round(vcpus_for_memory(config.memory_mb) * config.num_workers, 3),
        },
        "predicted": {
            "per_iteration_s": dict(b["per_iteration_s"], iteration=b["iteration_s"]),
            "requests": b["requests"],
        },
        "prediction": summary["prediction"],
        "measured": {
            "wall_s": summary["wall_time_s"],
            "phases_s": summary.get("phases_s", {}),
            "rounds": summary["rounds"],
            "requests": summary["requests"],
            "cost_usd": summary["cost_usd"],
            "per_iteration_s": {
                "aggregators_mean": aggs.to_dict() if aggs else None,
                "non_aggregators_mean": non_aggs.to_dict() if non_aggs else None,
            },
            "test_accuracy": summary["test_accuracy"],
            "rounds_timeline": rounds,
        },
        "load_avg_1min": {"before": load_before, "after": load_after},
        "background_busy_cores": background,
    }


def round_timeline(store: Any, keys: Keys, num_workers: int) -> list[dict[str, Any]]:
    """Per round, from the invocation records and worker 0's log of that round: seconds from the
    round's first invocation to worker 0's first iteration (start-up and barrier), its loop, and
    from its last iteration to the end of the round's last invocation. With the workers' own
    account of their start (``WorkerResult.setup_phases_s``): from the round's first invocation
    to their handlers' start, and each phase of their setup, mean and max over the workers."""
    records = sorted(json.loads(store.get(keys.invocations())), key=lambda r: r["started_at"])
    results = read_state(store, keys).results
    logs: dict[int, list[IterationLog]] = {}
    for key in store.list(keys.logs()):
        parsed = keys.parse_worker_log(key)
        if parsed is not None and parsed[0] == 0:
            lines = store.get(key).decode().splitlines()
            logs[parsed[1]] = [IterationLog.from_dict(json.loads(x)) for x in lines if x.strip()]
    out = []
    for i, rnd in enumerate(sorted(logs)):
        invs = records[i * num_workers : (i + 1) * num_workers]
        its = logs[rnd]
        if not invs or not its or its[0].end_s is None or its[-1].end_s is None:
            continue
        start = min(x["started_at"] for x in invs)
        end = max(x["ended_at"] for x in invs)
        loop_start = its[0].end_s - its[0].iteration_s
        mine = [r for r in results if r.round == rnd]
        seen = {"to_handler": [r.started_at - start for r in mine if r.started_at is not None]}
        for phase in ("data", "model", "comm", "barrier"):
            seen[phase] = [r.setup_phases_s[phase] for r in mine if phase in r.setup_phases_s]
        setup = {
            name: {"mean": round(statistics.fmean(v), 3), "max": round(max(v), 3)}
            for name, v in seen.items()
            if v
        }
        out.append(
            {
                "round": rnd,
                "iterations": len(its),
                "invocations_s": round(end - start, 3),
                "start_to_loop_s": round(loop_start - start, 3),
                "loop_s": round(its[-1].end_s - loop_start, 3),
                "loop_end_to_end_s": round(end - its[-1].end_s, 3),
                "setup_s": setup,
            }
        )
    return out


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f} %" if x is not None else "n/a"


def format_report(report: dict[str, Any]) -> str:
    s = report["settings"]
    c = report["coeffs"]
    lines = [
        f"{MODEL} on synthetic:{s['samples']} (3x32x32), {s['epochs']} epochs; local platform, "
        f"file store; W x M / {MB_PER_VCPU} <= 2 vCPUs; B = {report['batch_size_agg']} (γ {report['gamma']:.4f})",
        f"coeffs: a {c['a']:.4g} b {c['b']:.4g} m {c['m']:.4g}; start-up {c['startup_fixed_s']:.3g} + "
        f"{c['startup_cpu_s']:.3g}/vCPU s; cv {c['train_cv']:.3g} + {c['train_cv_cpu']:.3g}/vCPU; "
        f"evaluation {1e3 * c['eval_s_per_sample']:.3g} ms/sample + {c.get('eval_fixed_s') or 0:.3g} s; "
        f"data upload {c.get('data_upload_s') or 0:.3g} s",
        "",
        f"{'run':<8} {'W':>2} {'K':>2} {'M':>5} {'B':>3} {'A':>3} {'I':>5} {'rnds':>4}  "
        f"{'time pred':>9} {'meas':>7} {'acc':>7}  {'cost pred $':>11} {'meas $':>9} {'acc':>7}  load (busy)",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"{r['label']:<8} failed: {r['error'].splitlines()[0]}")
            continue
        p, pr = r["plan"], r["prediction"]
        rounds = pr["terms"].get("rounds", {})
        lines.append(
            f"{r['label']:<8} {p['num_workers']:>2} {p['pattern_k']:>2} {p['memory']:>5} "
            f"{p['batch_size_agg']:>3} {p['batch_size_wor']:>3} {p['iterations']:>5} "
            f"{rounds.get('predicted', 0):>2.0f}/{rounds.get('measured', 0):<1.0f}  "
            f"{pr['time_s']:>9.1f} {pr['measured_time_s']:>7.1f} {_pct(pr['accuracy_time']):>7}  "
            f"{pr['cost_usd']:>11.6f} {pr['measured_cost_usd']:>9.6f} {_pct(pr['accuracy_cost']):>7}  "
            f"{r['load_avg_1min']['before']}-{r['load_avg_1min']['after']} ({r['background_busy_cores']})"
        )
    lines += ["", "terms: predicted / measured (accuracy)"]
    names: list[str] = []
    for r in report["runs"]:
        for n in r.get("prediction", {}).get("terms", {}):
            if n not in names:
                names.append(n)
    for n in names:
        cells = []
        for r in report["runs"]:
            t = r.get("prediction", {}).get("terms", {}).get(n)
            cells.append(
                f"{t['predicted']:>10.4g} / {t['measured']:<10.4g} ({_pct(t['accuracy']):>7})"
                if t
                else f"{'-':>34}"
            )
        lines.append(f"  {n:<14}" + "  ".join(cells))
    lines += [
        "",
        "per iteration, ms      train  upload  aggr.  downl.  other  total  (predicted: the aggregators' critical path)",
    ]
    for r in report["runs"]:
        if "error" in r:
            continue
        pi = r["predicted"]["per_iteration_s"]
        lines.append(
            f"{r['label']:<8} predicted {1e3 * pi['train']:>6.1f} {1e3 * pi['upload']:>7.2f} "
            f"{1e3 * pi['aggregate']:>6.2f} {1e3 * pi['download']:>7.2f} {1e3 * pi['transform']:>6.2f} "
            f"{1e3 * pi['iteration']:>6.1f}"
        )
        for name, d in r["measured"]["per_iteration_s"].items():
            if d is None:
                continue
            lines.append(
                f"{'':<8} {name.split('_')[0][:9]:<9} {1e3 * d['train']:>6.1f} {1e3 * d['upload']:>7.2f} "
                f"{1e3 * d['aggregate']:>6.2f} {1e3 * d['download']:>7.2f} {1e3 * d['other']:>6.2f} "
                f"{1e3 * d['iteration']:>6.1f}"
            )
    lines += [
        "",
        "start-up per round, s   to loop  to handler  data   model  comm   barrier  (workers' mean / max)",
    ]
    for r in report["runs"]:
        if "error" in r:
            continue
        for t in r["measured"]["rounds_timeline"]:
            s = t.get("setup_s", {})

            def cell(name: str, s: dict[str, Any] = s) -> str:
                d = s.get(name)
                return f"{d['mean']:.2f}/{d['max']:.2f}" if d else "-"

            lines.append(
                f"{r['label']:<8} round {t['round']:<3} {t['start_to_loop_s']:>7.2f}  "
                + "  ".join(
                    f"{cell(n):>9}" for n in ("to_handler", "data", "model", "comm", "barrier")
                )
            )
    lines += [
        "",
        "requests   predicted PUT/GET/LIST/DELETE        measured PUT/GET/LIST/DELETE/HEAD",
    ]
    for r in report["runs"]:
        if "error" in r:
            continue
        pq, mq = r["predicted"]["requests"], r["measured"]["requests"]
        lines.append(
            f"{r['label']:<8} {pq['PUT']:>8,.0f} {pq['GET']:>8,.0f} {pq['LIST']:>5,.0f} {pq['DELETE']:>6,.0f}"
            f"      {mq.get('PUT', 0):>8,} {mq.get('GET', 0):>8,} {mq.get('LIST', 0):>5,} "
            f"{mq.get('DELETE', 0):>6,} {mq.get('HEAD', 0):>5,}"
        )
    lines += [
        "",
        "time = the coordinator's wall time + the final evaluation; cost = billed (whole billed "
        "durations of every invocation, invocations, every store request).",
        "startup (measured) = time - loop - checkpoint - evaluation: the functions' start, the "
        "barrier, the coordinator's partitions and bookkeeping.",
        "load = 1-min load average before-after the job (it counts the job's own functions); busy = "
        "cores other processes kept busy just before it.",
        f"{report['cpu_count']} cores; load average {report['load_avg_1min']['start']} at the start, "
        f"{report['load_avg_1min']['end']} at the end; {report['wall_s']:.0f} s in all",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small profile and jobs (smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--samples", type=int, help="training samples (default 10000, --quick 3000)"
    )
    parser.add_argument("--epochs", type=int, help="epochs (default 4, --quick 2)")
    parser.add_argument(
        "--coeffs", type=Path, metavar="JSON", help="reuse these coefficients (skip the profile)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="profile, coeffs, plans and the store (default: a temp dir)"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args(argv)
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

    coeffs = args.coeffs
    if coeffs is None:
        profile, transfer = workdir / "profile.csv", workdir / "transfer.csv"
        for p in (profile, transfer):
            p.unlink(missing_ok=True)
        fasdl(
            [
                "profile", "--model", MODEL, "--dataset", f"synthetic:{settings.samples}",
                "--memory", ",".join(map(str, settings.memory_mb)),
                "--batch", ",".join(map(str, settings.batch_sizes)),
                "--iterations", str(settings.iterations), "--sample-s", f"{settings.sample_s:g}",
                "--store", store_url, "--out", str(profile),
                "--storage", "--storage-out", str(transfer),
                "--sizes", ",".join(f"{s:g}" for s in settings.sizes_mb),
                "--storage-repeats", str(settings.storage_repeats), "--no-progress",
            ],
            log=log,
        )  # fmt: skip
        coeffs = workdir / "coeffs.json"
        fasdl(
            ["fit", str(profile), "--transfer", str(transfer), "--out", str(coeffs), "--json"],
            log=log,
        )

    from fasdl.optimizer import batch_size_agg
    from fasdl.perf.coefficients import read_coefficients

    c = read_coefficients(coeffs)
    # γ such that B = BATCH: B/(B + b) = γ (a hair above, for the float rounding of the ceil)
    gamma = BATCH / (BATCH + c.b) - 1e-12 if c.b > 0 else 0.8
    results = []
    for i, config in enumerate(CONFIGS):
        plan_path = workdir / f"plan-{config.label}.json"
        try:
            plan = write_plan(coeffs, config, settings, gamma, plan_path)
            results.append(
                run_plan(
                    config,
                    plan_path,
                    plan,
                    settings=settings,
                    store_url=store_url,
                    index=i,
                    log=log,
                )
            )
        except (StepFailed, subprocess.TimeoutExpired, KeyError, ValueError) as e:
            print(f"{config.label}: {e}", file=sys.stderr)
            results.append({"label": config.label, "error": str(e)})

    report = {
        "command": "python benchmarks/predict.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "settings": settings.__dict__,
        "configs": [cfg.__dict__ for cfg in CONFIGS],
        "cpu_count": os.cpu_count(),
        "workdir": str(workdir),
        "coeffs": {k: getattr(c, k) or 0.0 for k in (*REQUIRED_KEYS, *JOB_KEYS)},
        "gamma": gamma,
        "batch_size_agg": batch_size_agg(c.b, gamma),
        "runs": results,
        "commands": log,
        "load_avg_1min": {"start": load_start, "end": load_avg()},
        "wall_s": round(time.monotonic() - started, 1),
    }
    text = format_report(report)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stem = f"predict-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}"
        (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / f"{stem}.txt").write_text(text + "\n")
        report["saved"] = [str(RESULTS / f"{stem}.json"), str(RESULTS / f"{stem}.txt")]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(text)
        if "saved" in report:
            print("saved " + ", ".join(report["saved"]))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The K-Reduce advantage, measured: the optimizer's plan against ScatterReduce and AllReduce.

On the local platform (one process per invocation, memory/1769 vCPUs each) with the S3 store on
a real SeaweedFS server started here, one run:

1. **Plans.** Profiles the model (``fasdl profile`` at two memory sizes with small batches, and
   the store's transfer times for objects the size of the model's chunks), fits (``fasdl fit``)
   and asks ``fasdl optimize --max-vcpus V --json`` for a plan, V being the cores (2 here), so
   that the W functions of a plan fit the machine: W x M / 1769 <= V. By default the plan is
   the optimizer's *fastest* within that cap (``--objective time`` with a budget no plan
   reaches); ``--deadline S`` asks for its cheapest within S seconds instead. The cheapest plan
   of a small model is often one worker, where the three patterns are the same job.
2. **Patterns.** Trains the same model and data with the plan (K-Reduce: the non-aggregators use
   merged(t-1) and never wait) and with the synchronous baselines at the plan's W and memory
   and its global batch (W equal batches of global/W): ScatterReduce (K = W) and AllReduce
   (K = 1); every worker of a baseline waits for merged(t). "To the same target test accuracy"
   at *epoch granularity*: a job evaluates only at its end, so each pattern is trained for 1, 2,
   3, ... epochs (separate jobs, round-robin over the patterns so that a drifting load hits them
   alike) until its final test accuracy, averaged over ``--pattern-seeds`` (one job per seed),
   reaches ``--target``, up to ``--max-epochs`` or the ladders' time budget; the first epoch
   count that does is reported with its wall time and cost (means over the seeds). A pattern
   that needs e epochs may have crossed the target anywhere within its e-th epoch.
3. **Side by side**: time per iteration (median of aggregator 0's ``iteration_s`` in the worker
   logs of the jobs that reached the target, and the median of that over all the pattern's
   jobs), epochs, wall time, aggregator 0's loop time and cost to the target, final test
   accuracy and loss, requests by kind, and the optimizer's
   predicted time per iteration, time and cost (the plan JSON holds the K-Reduce prediction and
   the two baselines'; scaled from the plan's epochs to the epochs run) next to the measured.
   The model predicts the training loop only; the wall time adds starting the functions (a
   process, the torch import, the data), the coordinator and the final evaluation.
4. **Merge.** The aggregators' average weighted by batch size (``--merge batch``) against equal
   weights (``mean``), with momentum 0.9 and 0, for K-Reduce with K < W and unequal batches
   (default W = 4, K = 1, B = 8, A = 24: the one-iteration-stale non-aggregators weigh 0.90 of
   the average with batch weights, 0.75 with equal ones, as at W = 8, K = 2, B = 32, A = 96),
   on two models, several seeds (the seed draws the weights, the partitions, the data order and
   for ``digits`` the train/test split); final test accuracy and test loss after the same epochs.

    python benchmarks/patterns.py            # 8-16 min on 2 cores (ladders stop after 16 min)
    python benchmarks/patterns.py --quick    # ~2 min smoke run (one merge model, one seed)
    python benchmarks/patterns.py --dataset digits --target 0.95 --deadline 600 --skip-merge
    python benchmarks/patterns.py --json     # the figures as one JSON object
    python benchmarks/patterns.py --skip-merge / --skip-patterns

Results go to benchmarks/results/patterns-<time>.json and .txt (the printed tables). The 1-min
load average is recorded before and after every job, and the cores other processes keep busy
just before every timed job: run it on a quiet machine.

What a 2-core machine hides: W x M / 1769 <= 2 allows W <= 2 at 1,769 MB or W <= 4 at 884 MB,
so neither the many-worker plans where the patterns differ most (ScatterReduce's W^2 pieces,
AllReduce's one aggregator receiving W - 1 models) nor real stragglers are measured; the store
is on this machine, so a transfer takes milliseconds where S3 takes tens, and the per-request
latency that K-Reduce saves is smaller than on AWS.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STEP_TIMEOUT_S = 1800
BUCKET = "fasdl-patterns"
PATTERNS = ("kreduce", "scatter_reduce", "allreduce")
PLAN_KEYS = {"kreduce": None, "scatter_reduce": "scatter_reduce", "allreduce": "all_reduce"}
LABELS = {"kreduce": "K-Reduce", "scatter_reduce": "ScatterReduce", "allreduce": "AllReduce"}


@dataclass(frozen=True)
class Settings:
    # patterns
    model: str
    dataset: str
    samples: int  # training samples of `dataset` (the optimizer's --samples)
    target: float  # reached when the mean test accuracy over pattern_seeds is at least this
    max_epochs: int
    pattern_seeds: tuple[int, ...]
    # No job of the ladders starts after this many seconds: a plan of tiny batches has many
    # iterations per epoch, and the run must end (the patterns not at the target say so).
    ladder_budget_s: float
    profile_memory_mb: tuple[int, ...]
    profile_batches: tuple[int, ...]
    profile_iterations: int
    profile_sample_s: float
    transfer_sizes_mb: tuple[float, ...]
    transfer_repeats: int
    # merge
    merge_models: tuple[str, ...]
    merge_dataset: str
    merge_config: tuple[int, int, int, int, int]  # W, K, B, A, memory MB
    merge_epochs: int
    seeds: tuple[int, ...]
    momenta: tuple[float, ...]


FULL = Settings(
    model="cnn",
    dataset="synthetic:4000",
    samples=4000,
    target=0.85,
    max_epochs=6,
    pattern_seeds=(0, 1),
    ladder_budget_s=960,
    profile_memory_mb=(885, 1769),
    # The plan's B = ceil(γ·b/(1-γ)) rests on the fitted intercept b of T_train = a·(B + b)/(M + m),
    # which batches of 8-32 barely determine for a small model (b came out between -1.5 and 12 in
    # five profiles of the CNN, and B between 1 and 48): a batch of 2 measures it.
    profile_batches=(2, 8, 32),
    profile_iterations=5,
    profile_sample_s=0.5,
    # The CNN's vector is 0.12 MB, cut into K chunks: what K-Reduce moves is 0.03-0.12 MB.
    transfer_sizes_mb=(0.01, 0.03, 0.1, 0.3, 1.0),
    transfer_repeats=5,
    merge_models=("cnn", "mlp"),
    merge_dataset="digits",
    merge_config=(4, 1, 8, 24, 884),
    merge_epochs=3,
    seeds=(0, 1, 2),
    momenta=(0.9, 0.0),
)
QUICK = replace(
    FULL,
    dataset="synthetic:1000",
    samples=1000,
    target=0.5,
    max_epochs=2,
    pattern_seeds=(0,),
    ladder_budget_s=90,
    profile_batches=(2, 32),
    profile_iterations=2,
    profile_sample_s=0.2,
    transfer_sizes_mb=(0.03, 0.1, 1.0),
    transfer_repeats=2,
    merge_models=("cnn",),
    merge_epochs=1,
    seeds=(0,),
)


# -- running the CLI and measuring the machine ---------------------------------------------------


class StepFailed(RuntimeError):
    pass


def fasdl(args: list[str], *, log: list[dict[str, Any]]) -> tuple[str, float]:
    """Run ``fasdl ARGS`` (as ``python -m fasdl.cli.main``); return stdout and seconds.

    From a directory holding no ``fasdl`` (``-m`` puts the working directory first on the path),
    so that the CLI and its functions import the same fasdl as this process (``PYTHONPATH``)."""
    shown = "fasdl " + shlex.join(args)
    print(f"$ {shown}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fasdl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    seconds = time.monotonic() - t0
    log.append({"command": shown, "exit_code": proc.returncode, "seconds": round(seconds, 2)})
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise StepFailed(f"{shown} exited {proc.returncode}:\n{tail}")
    return proc.stdout, seconds


def load_avg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores kept busy by everything else, from /proc/stat over ``seconds`` (before a job)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v[:8]) - idle, sum(v[:8])

    try:
        b0, t0 = sample()
        time.sleep(seconds)
        b1, t1 = sample()
    except OSError:
        return None
    return round((b1 - b0) / (t1 - t0) * (os.cpu_count() or 1), 2) if t1 > t0 else None


def source_info(note: str | None) -> dict[str, Any]:
    """Which fasdl ran: where it was imported from and, when that is this repository, its
    commit and the files modified since."""
    import fasdl

    pkg = Path(fasdl.__file__).resolve().parent
    root = HERE.parent
    info: dict[str, Any] = {"fasdl": str(pkg), "note": note}
    if pkg.parent != root:
        return info
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        info["tree_modified_files"] = [line[3:] for line in dirty if line.strip()]
    except OSError:
        pass
    return info


# -- one training job ----------------------------------------------------------------------------


def train(
    args: list[str], *, store_url: str, job_id: str, log: list[dict[str, Any]], timed: bool
) -> dict[str, Any]:
    """``fasdl train ARGS --json``; the summary, test loss, aggregator 0's logs and the load."""
    from fasdl.kreduce.config import JobConfig
    from fasdl.kreduce.keys import Keys
    from fasdl.kreduce.logs import iteration_stats, loop_s, mean_stats, read_worker_logs
    from fasdl.store import open_store

    background = busy_cores() if timed else None
    before = load_avg()
    out, cli_s = fasdl(
        [
            "train",
            *args,
            "--store",
            store_url,
            "--platform",
            "local",
            "--job-id",
            job_id,
            "--json",
            "--no-progress",
        ],
        log=log,
    )
    after = load_avg()
    summary = json.loads(out)
    cfg = JobConfig.from_dict(summary["config"])
    store = open_store(store_url)
    logs = read_worker_logs(store, Keys.for_job(cfg))
    K = cfg.num_aggregators
    agg0 = iteration_stats(logs[0])
    non_aggs = mean_stats([iteration_stats(logs[w]) for w in sorted(logs) if w >= K])
    loss, acc = test_loss(store, cfg, Keys.for_job(cfg).model())
    return {
        "job_id": job_id,
        "config": {
            "pattern": cfg.pattern,
            "num_workers": cfg.num_workers,
            "num_aggregators": K,
            "memory_mb": cfg.memory_mb,
            "batch_size_agg": cfg.batch_size_agg,
            "batch_size_wor": cfg.batch_size_wor,
            "global_batch": cfg.global_batch,
            "epochs": cfg.epochs,
            "merge": cfg.merge,
            "momentum": cfg.momentum,
            "lr": cfg.lr,
            "seed": cfg.seed,
        },
        "wall_s": summary["wall_time_s"],
        "cli_s": round(cli_s, 2),
        "loop_s": loop_s(logs[0]),
        "iterations": summary["iterations"],
        "iterations_per_epoch": summary.get("iterations_per_epoch"),
        "median_iteration_s": agg0.median_iteration,
        "aggregator_0": agg0.to_dict(),
        "non_aggregators_mean": non_aggs.to_dict() if non_aggs else None,
        "invocations": summary["invocations"],
        "billed_gb_s": summary["billed_gb_s"],
        "requests": summary["requests"],
        "cost_usd": summary["cost_usd"],
        "test_accuracy": summary["test_accuracy"],
        "test_accuracy_recomputed": acc,
        "test_loss": loss,
        "final_train_loss": summary["final_loss"],
        "load_avg_1min": {"before": before, "after": after},
        "background_busy_cores": background,
    }


def test_loss(store: Any, cfg: Any, model_key: str) -> tuple[float | None, float | None]:
    """Mean cross-entropy and accuracy of the job's final model on its test split (the job itself
    reports only the accuracy)."""
    import torch
    import torch.nn.functional as F

    from fasdl.data import load_dataset
    from fasdl.training.step import seeded_model

    train_set, test = load_dataset(cfg.dataset, seed=cfg.seed, store=store.scoped(cfg.data_prefix))
    if len(test.y) == 0:
        return None, None
    model = seeded_model(cfg.model, cfg.seed, int(train_set.num_classes), train_set.input_shape)
    model.load_state_dict(torch.load(io.BytesIO(store.get(model_key)), weights_only=True))
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(test.y), 500):
            x = torch.from_numpy(test.x[i : i + 500].copy())
            y = torch.from_numpy(test.y[i : i + 500].copy())
            logits = model(x)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    return total / len(test.y), correct / len(test.y)


# -- 1. the plan --------------------------------------------------------------------------------


def make_plan(
    s: Settings,
    *,
    workdir: Path,
    store_url: str,
    vcpus: float,
    deadline_s: float | None,
    log: list[dict[str, Any]],
) -> dict[str, Any]:
    profile, transfer, coeffs = (
        workdir / "profile.csv",
        workdir / "transfer.csv",
        workdir / "coeffs.json",
    )
    for p in (profile, transfer):
        p.unlink(missing_ok=True)
    _, profile_s = fasdl(
        [
            "profile",
            "--model",
            s.model,
            "--dataset",
            s.dataset,
            "--memory",
            ",".join(map(str, s.profile_memory_mb)),
            "--batch",
            ",".join(map(str, s.profile_batches)),
            "--iterations",
            str(s.profile_iterations),
            "--sample-s",
            f"{s.profile_sample_s:g}",
            "--store",
            store_url,
            "--out",
            str(profile),
            "--storage",
            "--storage-out",
            str(transfer),
            "--sizes",
            ",".join(f"{x:g}" for x in s.transfer_sizes_mb),
            "--storage-repeats",
            str(s.transfer_repeats),
            "--no-progress",
        ],
        log=log,
    )
    out, _ = fasdl(
        ["fit", str(profile), "--transfer", str(transfer), "--out", str(coeffs), "--json"], log=log
    )
    fit = json.loads(out)
    objective = (
        ["--deadline", f"{deadline_s:g}"]
        if deadline_s is not None
        else ["--objective", "time", "--budget", "1000"]
    )
    out, _ = fasdl(
        [
            "optimize",
            "--coeffs",
            str(coeffs),
            "--epochs",
            str(s.max_epochs),
            "--samples",
            str(s.samples),
            *objective,
            "--max-vcpus",
            f"{vcpus:g}",
            "--json",
        ],
        log=log,
    )
    (workdir / "plan.json").write_text(out)
    plan: dict[str, Any] = json.loads(out)
    return {
        "plan": plan,
        "plan_path": str(workdir / "plan.json"),
        "objective": "cost within the deadline" if deadline_s is not None else "time (fastest)",
        "deadline_s": deadline_s,
        "profile_s": round(profile_s, 1),
        "fit": {
            "train": fit.get("train"),
            "trans": fit.get("trans"),
            "transfer_chosen": (fit.get("transfer") or {}).get("chosen"),
            "warnings": fit.get("warnings", []),
        },
    }


# -- 2. the patterns to the target accuracy ------------------------------------------------------


def pattern_args(pattern: str, plan: dict[str, Any], plan_path: str) -> list[str]:
    common = ["--merge", "batch", "--momentum", "0.9"]
    if pattern == "kreduce":
        return ["--plan", plan_path, "--pattern", "kreduce", *common]
    base = plan[PLAN_KEYS[pattern] or ""]
    g = int(base["batch_size_agg"])
    return [
        "--pattern",
        pattern,
        "-W",
        str(plan["num_workers"]),
        "--memory",
        str(plan["memory"]),
        "--batch-agg",
        str(g),
        "--batch-wor",
        str(g),
        *common,
    ]


def run_patterns(
    s: Settings,
    planned: dict[str, Any],
    *,
    store_url: str,
    stamp: str,
    log: list[dict[str, Any]],
) -> dict[str, Any]:
    plan, plan_path = planned["plan"], planned["plan_path"]
    if plan["num_workers"] < 2:
        raise StepFailed(
            f"the optimizer's plan has W = {plan['num_workers']}: the three patterns would be the "
            "same job; ask for a faster plan (no --deadline, or a shorter one)"
        )
    ladders: dict[str, list[dict[str, Any]]] = {p: [] for p in PATTERNS}
    reached: dict[str, int] = {}  # pattern -> the first epochs whose mean accuracy reaches it
    stopped: set[str] = set()  # reached the target, or failed
    started = time.monotonic()
    out_of_time = False
    for epochs in range(1, s.max_epochs + 1):
        for pattern in PATTERNS:
            if pattern in stopped or out_of_time:
                continue
            runs, errors = [], []
            for seed in s.pattern_seeds:
                if time.monotonic() - started > s.ladder_budget_s:
                    out_of_time = True
                    print(
                        f"  the ladders' budget of {s.ladder_budget_s:g} s is spent: stopping",
                        file=sys.stderr,
                    )
                    break
                job = f"pat-{stamp}-{pattern}-e{epochs}-s{seed}"
                try:
                    r = train(
                        [
                            *pattern_args(pattern, plan, plan_path),
                            "--model",
                            s.model,
                            "--dataset",
                            s.dataset,
                            "--epochs",
                            str(epochs),
                            "--seed",
                            str(seed),
                        ],
                        store_url=store_url,
                        job_id=job,
                        log=log,
                        timed=True,
                    )
                except (StepFailed, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                    print(f"{job}: {e}", file=sys.stderr)
                    errors.append(f"seed {seed}: {e}")
                    continue
                runs.append(r)
                print(
                    f"  {pattern:<15} {epochs} epoch(s), seed {seed}: accuracy "
                    f"{r['test_accuracy']:.4f}, wall {r['wall_s']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            if errors:
                ladders[pattern].append({"epochs": epochs, "error": "; ".join(errors)})
                stopped.add(pattern)
                continue
            if out_of_time:  # this epoch count did not run for every seed: not a step
                continue
            step = average_runs(runs)
            step["epochs"] = epochs
            ladders[pattern].append(step)
            if step["test_accuracy"] >= s.target:
                reached[pattern] = epochs
                stopped.add(pattern)
    patterns = {}
    for pattern in PATTERNS:
        steps = [r for r in ladders[pattern] if "error" not in r]
        final = steps[-1] if steps else None
        jobs = [r for step in steps for r in step["runs"]]
        patterns[pattern] = {
            "epochs_to_target": reached.get(pattern),
            "final": final,  # the epochs that reached the target, else the last ones run
            "predicted": predicted_for(pattern, plan, final["epochs"]) if final else None,
            # Over every job of the ladder (all epochs and seeds): less exposed to a moment of
            # load from other processes than the jobs at the target alone.
            "all_jobs": {
                "jobs": len(jobs),
                "median_iteration_s": statistics.median(r["median_iteration_s"] for r in jobs)
                if jobs
                else None,
                "loop_s_per_epoch": statistics.median(
                    r["loop_s"] / r["config"]["epochs"] for r in jobs
                )
                if jobs
                else None,
                "wall_s_per_epoch": statistics.median(
                    r["wall_s"] / r["config"]["epochs"] for r in jobs
                )
                if jobs
                else None,
            },
            "ladder": ladders[pattern],
        }
    return {
        "target": s.target,
        "max_epochs": s.max_epochs,
        "seeds": list(s.pattern_seeds),
        "budget_s": s.ladder_budget_s,
        "stopped_by_budget": out_of_time,
        "ladders_s": round(time.monotonic() - started, 1),
        "patterns": patterns,
    }


def average_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' runs of one pattern and epoch count as one: the mean of every figure (the
    per-iteration medians too), the first run's configuration, the load around all of them."""
    first = runs[0]

    def mean(get: Any) -> Any:
        values = [get(r) for r in runs]
        if any(v is None for v in values):
            return None
        return statistics.fmean(values)

    def mean_dict(get: Any) -> dict[str, float] | None:
        ds = [get(r) for r in runs]
        if any(d is None for d in ds):
            return None
        return {k: statistics.fmean(d.get(k, 0) for d in ds) for k in ds[0]}

    return {
        "config": {k: v for k, v in first["config"].items() if k != "seed"},
        "seeds": [r["config"]["seed"] for r in runs],
        "job_ids": [r["job_id"] for r in runs],
        "wall_s": mean(lambda r: r["wall_s"]),
        "loop_s": mean(lambda r: r["loop_s"]),
        "iterations": first["iterations"],
        "iterations_per_epoch": first["iterations_per_epoch"],
        "invocations": mean(lambda r: r["invocations"]),
        "median_iteration_s": mean(lambda r: r["median_iteration_s"]),
        "aggregator_0": mean_dict(lambda r: r["aggregator_0"]),
        "non_aggregators_mean": mean_dict(lambda r: r["non_aggregators_mean"]),
        "requests": mean_dict(lambda r: r["requests"]),
        "cost_usd": mean_dict(lambda r: r["cost_usd"]),
        "test_accuracy": mean(lambda r: r["test_accuracy"]),
        "test_accuracies": [r["test_accuracy"] for r in runs],
        "test_loss": mean(lambda r: r["test_loss"]),
        "load_avg_1min": {
            "before": first["load_avg_1min"]["before"],
            "after": runs[-1]["load_avg_1min"]["after"],
        },
        "background_busy_cores": max(
            (r["background_busy_cores"] for r in runs if r["background_busy_cores"] is not None),
            default=None,
        ),
        "runs": runs,
    }


def predicted_for(pattern: str, plan: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The plan's prediction for ``pattern``, scaled from the plan's epochs to ``epochs``."""
    scale = epochs / plan["epochs"]
    if pattern == "kreduce":
        b = plan["breakdown"]
        return {
            "iteration_s": b["iteration_s"],
            "iterations": b["iterations"] * scale,
            "time_s": plan["predicted_time_s"] * scale,
            "cost_usd": plan["predicted_cost_usd"] * scale,
            "requests": {k: v * scale for k, v in b["requests"].items()},
        }
    base = plan[PLAN_KEYS[pattern] or ""]
    return {
        "iteration_s": base["time_s"] / base["iterations"] if base["iterations"] else None,
        "iterations": base["iterations"] * scale,
        "time_s": base["time_s"] * scale,
        "cost_usd": base["cost_usd"] * scale,
        "requests": None,
        "problem": base.get("problem"),
    }


def comparable_cost(r: dict[str, Any]) -> float:
    """W x M x loop at the GB-second price, the invocations and every request: what the model
    prices (the billed cost adds the functions' start-up)."""
    from fasdl.optimizer.accuracy import comparable_cost_usd
    from fasdl.pricing import load_prices

    c = r["config"]
    return comparable_cost_usd(
        load_prices("aws"),
        num_workers=c["num_workers"],
        memory_mb=c["memory_mb"],
        loop_s=r["loop_s"],
        invocations=r["invocations"],
        storage_usd=r["cost_usd"]["storage"],
    )


# -- 4. merge and momentum -----------------------------------------------------------------------


def run_merge(
    s: Settings, *, store_url: str, stamp: str, log: list[dict[str, Any]]
) -> dict[str, Any]:
    W, K, B, A, M = s.merge_config
    runs = []
    for model in s.merge_models:
        for momentum in s.momenta:
            for merge in ("batch", "mean"):
                for seed in s.seeds:
                    job = f"mrg-{stamp}-{model}-m{momentum:g}-{merge}-s{seed}"
                    try:
                        r = train(
                            [
                                "--model",
                                model,
                                "--dataset",
                                s.merge_dataset,
                                "--pattern",
                                "kreduce",
                                "-W",
                                str(W),
                                "-K",
                                str(K),
                                "--batch-agg",
                                str(B),
                                "--batch-wor",
                                str(A),
                                "--memory",
                                str(M),
                                "--epochs",
                                str(s.merge_epochs),
                                "--merge",
                                merge,
                                "--momentum",
                                f"{momentum:g}",
                                "--seed",
                                str(seed),
                            ],
                            store_url=store_url,
                            job_id=job,
                            log=log,
                            timed=False,
                        )
                    except (StepFailed, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                        print(f"{job}: {e}", file=sys.stderr)
                        runs.append(
                            {
                                "model": model,
                                "momentum": momentum,
                                "merge": merge,
                                "seed": seed,
                                "error": str(e),
                            }
                        )
                        continue
                    print(
                        f"  {model} momentum {momentum:g} {merge:<5} seed {seed}: accuracy "
                        f"{r['test_accuracy']:.4f}, test loss {r['test_loss']:.4f}",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs.append(
                        {"model": model, "momentum": momentum, "merge": merge, "seed": seed, **r}
                    )
    stale_share = {
        "batch": (W - K) * A / (K * B + (W - K) * A),
        "mean": (W - K) / W,
    }
    return {
        "dataset": s.merge_dataset,
        "config": {"W": W, "K": K, "B": B, "A": A, "memory_mb": M, "epochs": s.merge_epochs},
        "stale_share": stale_share,
        "seeds": list(s.seeds),
        "runs": runs,
        "summary": merge_summary(runs),
    }


def _mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def merge_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for r in runs:
        if "error" not in r:
            groups.setdefault((r["model"], r["momentum"], r["merge"]), []).append(r)
    out = []
    for (model, momentum, merge), rs in groups.items():
        acc_mean, acc_sd = _mean_sd([r["test_accuracy"] for r in rs])
        loss_mean, loss_sd = _mean_sd([r["test_loss"] for r in rs])
        out.append(
            {
                "model": model,
                "momentum": momentum,
                "merge": merge,
                "n": len(rs),
                "accuracy_mean": acc_mean,
                "accuracy_sd": acc_sd,
                "test_loss_mean": loss_mean,
                "test_loss_sd": loss_sd,
                "accuracies": [r["test_accuracy"] for r in rs],
                "test_losses": [r["test_loss"] for r in rs],
            }
        )
    return out


# -- 3. the report -------------------------------------------------------------------------------


def _f(x: float | None, fmt: str, missing: str = "-") -> str:
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _saving(base: float | None, ours: float | None) -> str:
    if base is None or ours is None or base <= 0:
        return "-"
    return f"{100 * (base - ours) / base:+.1f} %"


def format_patterns(report: dict[str, Any]) -> list[str]:
    pl = report["plan"]
    plan = pl["plan"]
    s = report["settings"]
    res = report["patterns"]
    lines = [
        f"== Patterns: {s['model']} on {s['dataset']}, target: mean test accuracy over seeds "
        f"{', '.join(map(str, res['seeds']))} >= {res['target']:g} (epoch granularity, at most "
        f"{res['max_epochs']} epochs); SeaweedFS S3 store, local platform; figures are means over the seeds",
        f"plan (fasdl optimize --max-vcpus {report['vcpus']:g}, objective {pl['objective']}; "
        f"profiled in {pl['profile_s']:.0f} s, transfer model: {pl['fit']['transfer_chosen']}): "
        f"W = {plan['num_workers']}, K = {plan['pattern_k']}, M = {plan['memory']} MB, "
        f"B = {plan['batch_size_agg']}, A = {plan['batch_size_wor']}, "
        f"global batch {plan['breakdown']['global_batch']}",
        "",
    ]
    cols = list(PATTERNS)
    rows: list[tuple[str, list[str]]] = []
    P = res["patterns"]

    def final(p: str) -> dict[str, Any] | None:
        f: dict[str, Any] | None = P[p]["final"]
        return f

    def cell(p: str, fn: Any) -> str:
        f = final(p)
        if f is None:
            return "failed"
        try:
            return str(fn(f, P[p]))
        except (KeyError, TypeError, ZeroDivisionError):
            return "-"

    rows.append(
        (
            "K / B / A (global batch)",
            [
                cell(
                    p,
                    lambda f, _: (
                        f"{f['config']['num_aggregators']} / {f['config']['batch_size_agg']}"
                        f" / {f['config']['batch_size_wor']} ({f['config']['global_batch']})"
                    ),
                )
                for p in cols
            ],
        )
    )
    rows.append(
        (
            "iterations per epoch",
            [cell(p, lambda f, _: f["iterations_per_epoch"]) for p in cols],
        )
    )
    rows.append(
        (
            "ms/iteration, aggr. 0 median",
            [cell(p, lambda f, _: f"{1e3 * f['median_iteration_s']:.1f}") for p in cols],
        )
    )
    rows.append(
        (
            "  median over all its jobs",
            [
                cell(p, lambda _, q: _f(1e3 * q["all_jobs"]["median_iteration_s"], ".1f"))
                for p in cols
            ],
        )
    )
    rows.append(
        (
            "  predicted",
            [cell(p, lambda _, q: _f(1e3 * q["predicted"]["iteration_s"], ".1f")) for p in cols],
        )
    )
    rows.append(
        (
            "loop s per epoch, all jobs' median",
            [cell(p, lambda _, q: _f(q["all_jobs"]["loop_s_per_epoch"], ".2f")) for p in cols],
        )
    )
    rows.append(
        (
            "ms/iteration, non-aggr. mean",
            [
                cell(
                    p,
                    lambda f, _: _f(
                        1e3 * f["non_aggregators_mean"]["iteration"]
                        if f["non_aggregators_mean"]
                        else None,
                        ".1f",
                    ),
                )
                for p in cols
            ],
        )
    )
    rows.append(
        (
            f"epochs to accuracy >= {res['target']:g}",
            [
                cell(
                    p,
                    lambda f, q: (
                        q["epochs_to_target"]
                        if q["epochs_to_target"]
                        else f"not in {f['epochs']}"
                        + (" (time)" if res.get("stopped_by_budget") else "")
                    ),
                )
                for p in cols
            ],
        )
    )
    rows.append(("wall s to target", [cell(p, lambda f, _: f"{f['wall_s']:.1f}") for p in cols]))
    rows.append(
        ("loop s (aggr. 0) to target", [cell(p, lambda f, _: f"{f['loop_s']:.1f}") for p in cols])
    )
    rows.append(
        (
            "  predicted loop s",
            [cell(p, lambda _, q: f"{q['predicted']['time_s']:.1f}") for p in cols],
        )
    )
    rows.append(
        (
            "cost $ to target, billed",
            [cell(p, lambda f, _: f"{f['cost_usd']['total']:.5f}") for p in cols],
        )
    )
    rows.append(
        (
            "  of which storage",
            [cell(p, lambda f, _: f"{f['cost_usd']['storage']:.5f}") for p in cols],
        )
    )
    rows.append(
        (
            "cost $, loop only (comparable)",
            [cell(p, lambda f, _: f"{comparable_cost(f):.5f}") for p in cols],
        )
    )
    rows.append(
        (
            "  predicted cost $",
            [cell(p, lambda _, q: f"{q['predicted']['cost_usd']:.5f}") for p in cols],
        )
    )
    rows.append(
        ("final test accuracy", [cell(p, lambda f, _: f"{f['test_accuracy']:.4f}") for p in cols])
    )
    rows.append(
        ("final test loss", [cell(p, lambda f, _: _f(f["test_loss"], ".4f")) for p in cols])
    )
    for kind in ("PUT", "GET", "DELETE", "LIST"):
        rows.append(
            (
                f"{kind} requests (per iteration)",
                [
                    cell(
                        p,
                        lambda f, _, k=kind: (
                            f"{f['requests'].get(k, 0):,.0f} "
                            f"({f['requests'].get(k, 0) / max(1, f['iterations']):.1f})"
                        ),
                    )
                    for p in cols
                ],
            )
        )
    rows.append(
        (
            "  predicted PUT/GET/DELETE",
            [
                cell(
                    p,
                    lambda _, q: (
                        "/".join(
                            f"{q['predicted']['requests'].get(k, 0):,.0f}"
                            for k in ("PUT", "GET", "DELETE")
                        )
                        if q["predicted"]["requests"]
                        else "-"
                    ),
                )
                for p in cols
            ],
        )
    )
    rows.append(
        (
            "load avg before-after (busy)",
            [
                cell(
                    p,
                    lambda f, _: (
                        f"{f['load_avg_1min']['before']}-{f['load_avg_1min']['after']}"
                        f" ({f['background_busy_cores']})"
                    ),
                )
                for p in cols
            ],
        )
    )
    width = 36
    lines.append(f"{'':<{width}}" + "".join(f"{LABELS[p]:>20}" for p in cols))
    for name, cells in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{c:>20}" for c in cells))

    # K-Reduce's savings, measured and predicted
    lines += [
        "",
        "K-Reduce saves against      measured: wall  loop  cost billed  cost cmp   predicted: time  cost   iteration",
    ]
    k = P["kreduce"]["final"]
    for p in ("scatter_reduce", "allreduce"):
        f = P[p]["final"]
        if k is None or f is None:
            continue
        pk, pb = P["kreduce"]["predicted"], P[p]["predicted"]
        lines.append(
            f"  {LABELS[p]:<24} {_saving(f['wall_s'], k['wall_s']):>16} {_saving(f['loop_s'], k['loop_s']):>8}"
            f" {_saving(f['cost_usd']['total'], k['cost_usd']['total']):>11}"
            f" {_saving(comparable_cost(f), comparable_cost(k)):>10}"
            f" {_saving(pb['time_s'], pk['time_s']):>16} {_saving(pb['cost_usd'], pk['cost_usd']):>7}"
            f" {_saving(f['median_iteration_s'], k['median_iteration_s']):>10} (median, measured)"
        )
    lines.append(
        "  (to the target: each pattern's own epochs; predicted: at the epochs each ran. "
        "Per iteration: aggregator 0's median.)"
    )

    # the ladders
    lines += [
        "",
        "the ladders: epochs -> test accuracy, mean (per seed) / wall s / billed $ (means over seeds)",
    ]
    for p in cols:
        lines.append(f"  {LABELS[p]}")
        for r in P[p]["ladder"]:
            if "error" in r:
                lines.append(f"    {r['epochs']}: failed: {r['error'].splitlines()[0]}")
                continue
            per = ", ".join(f"{a:.4f}" for a in r["test_accuracies"])
            lines.append(
                f"    {r['epochs']}: {r['test_accuracy']:.4f} ({per}) / {r['wall_s']:.1f} s / "
                f"${r['cost_usd']['total']:.5f}"
            )
    return lines


def format_merge(report: dict[str, Any]) -> list[str]:
    m = report["merge"]
    c = m["config"]
    sh = m["stale_share"]
    lines = [
        f"== Merge: K-Reduce W = {c['W']}, K = {c['K']}, B = {c['B']}, A = {c['A']}, "
        f"M = {c['memory_mb']} MB on {m['dataset']}, {c['epochs']} epoch(s), seeds "
        f"{', '.join(map(str, m['seeds']))}; lr 0.05",
        f"the stale non-aggregators' share of the average: batch {sh['batch']:.2f}, mean {sh['mean']:.2f}",
        "",
        f"{'model':<6} {'momentum':>8} {'merge':<6} {'accuracy mean':>13} {'sd':>7} {'test loss':>10} {'sd':>7}   per seed (accuracy / loss)",
    ]
    for g in m["summary"]:
        per = ", ".join(
            f"{a:.3f}/{_f(lo, '.3f')}"
            for a, lo in zip(g["accuracies"], g["test_losses"], strict=True)
        )
        lines.append(
            f"{g['model']:<6} {g['momentum']:>8g} {g['merge']:<6} {g['accuracy_mean']:>13.4f} "
            f"{_f(g['accuracy_sd'], '.4f'):>7} {_f(g['test_loss_mean'], '.4f'):>10} "
            f"{_f(g['test_loss_sd'], '.4f'):>7}   {per}"
        )
    failed = [r for r in m["runs"] if "error" in r]
    for r in failed:
        lines.append(
            f"failed: {r['model']} momentum {r['momentum']:g} {r['merge']} seed {r['seed']}: "
            f"{r['error'].splitlines()[0]}"
        )
    # batch - mean, paired by seed
    lines += ["", "batch - mean, paired by seed (accuracy points; test loss)"]
    by = {
        (r["model"], r["momentum"], r["merge"], r["seed"]): r for r in m["runs"] if "error" not in r
    }
    for model in dict.fromkeys(r["model"] for r in m["runs"]):
        for mom in dict.fromkeys(r["momentum"] for r in m["runs"]):
            d_acc, d_loss = [], []
            for seed in m["seeds"]:
                b, e = by.get((model, mom, "batch", seed)), by.get((model, mom, "mean", seed))
                if b and e:
                    d_acc.append(100 * (b["test_accuracy"] - e["test_accuracy"]))
                    if b["test_loss"] is not None and e["test_loss"] is not None:
                        d_loss.append(b["test_loss"] - e["test_loss"])
            if d_acc:
                lines.append(
                    f"  {model:<6} momentum {mom:<4g} accuracy "
                    + ", ".join(f"{d:+.1f}" for d in d_acc)
                    + f" (mean {statistics.fmean(d_acc):+.2f}); loss "
                    + ", ".join(f"{d:+.3f}" for d in d_loss)
                )
    return lines


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    if report.get("patterns"):
        lines += [*format_patterns(report), ""]
    elif report.get("patterns_error"):
        lines += [f"== Patterns failed: {report['patterns_error']}", ""]
    if report.get("merge"):
        lines += [*format_merge(report), ""]
    la, src = report["load_avg_1min"], report["source"]
    lines.append(
        f"{report['cpu_count']} cores; load average {la['start']} at the start, {la['end']} at "
        f"the end; {report['wall_s']:.0f} s in all; fasdl from {src['fasdl']}"
        + (f" at {src['commit'][:10]}" if src.get("commit") else "")
        + (" (tree modified)" if src.get("tree_modified_files") else "")
        + (f"; {src['note']}" if src.get("note") else "")
    )
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small run (~3 min)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--model", help="model of the patterns (default cnn)")
    parser.add_argument(
        "--dataset", help="dataset of the patterns (default synthetic:4000, --quick synthetic:1000)"
    )
    parser.add_argument(
        "--target",
        type=float,
        help="target test accuracy (default 0.85 for cnn on synthetic:4000, --quick 0.5)",
    )
    parser.add_argument("--max-epochs", type=int, help="epoch cap of the ladders (default 6)")
    parser.add_argument(
        "--ladder-budget-s",
        type=float,
        metavar="S",
        help="start no ladder job after S seconds of ladders (default 960, --quick 90)",
    )
    parser.add_argument(
        "--pattern-seeds", help="comma list of the ladders' seeds (default 0,1; --quick 0)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        help="plan: the cheapest within S seconds (default: the fastest plan)",
    )
    parser.add_argument(
        "--vcpus",
        type=float,
        default=float(os.cpu_count() or 2),
        help="fasdl optimize --max-vcpus (default: the cores)",
    )
    parser.add_argument(
        "--merge-models", help="comma list of models of the merge comparison (default cnn,mlp)"
    )
    parser.add_argument("--merge-dataset", help="dataset of the merge comparison (default digits)")
    parser.add_argument("--merge-epochs", type=int, help="epochs of the merge runs (default 3)")
    parser.add_argument(
        "--merge-config",
        metavar="W,K,B,A,MB",
        help="K-Reduce of the merge runs (default 4,1,8,24,884)",
    )
    parser.add_argument("--seeds", help="comma list of seeds of the merge runs (default 0,1,2)")
    parser.add_argument(
        "--note", help="recorded with the results, e.g. which snapshot of fasdl ran (PYTHONPATH)"
    )
    parser.add_argument("--skip-patterns", action="store_true")
    parser.add_argument("--skip-merge", action="store_true")
    parser.add_argument("--workdir", type=Path, help="profile, coeffs, plan (default: a temp dir)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args(argv)

    s = QUICK if args.quick else FULL
    if args.dataset:
        if not args.dataset.startswith("synthetic") and args.target is None:
            parser.error("--dataset other than synthetic:N needs --target")
        n = s.samples
        if args.dataset.startswith("synthetic"):
            n = int(args.dataset.split(":", 1)[1]) if ":" in args.dataset else 5000
        elif args.dataset == "digits":
            n = 1437
        s = replace(s, dataset=args.dataset, samples=n)
    if args.model:
        s = replace(s, model=args.model)
    if args.target is not None:
        s = replace(s, target=args.target)
    if args.max_epochs:
        s = replace(s, max_epochs=args.max_epochs)
    if args.ladder_budget_s is not None:
        s = replace(s, ladder_budget_s=args.ladder_budget_s)
    if args.pattern_seeds:
        s = replace(s, pattern_seeds=tuple(int(x) for x in args.pattern_seeds.split(",")))
    if args.merge_models:
        s = replace(s, merge_models=tuple(args.merge_models.split(",")))
    if args.merge_dataset:
        s = replace(s, merge_dataset=args.merge_dataset)
    if args.merge_epochs:
        s = replace(s, merge_epochs=args.merge_epochs)
    if args.merge_config:
        parts = tuple(int(x) for x in args.merge_config.split(","))
        if len(parts) != 5:
            parser.error("--merge-config is W,K,B,A,MB")
        s = replace(s, merge_config=(parts[0], parts[1], parts[2], parts[3], parts[4]))
    if args.seeds:
        s = replace(s, seeds=tuple(int(x) for x in args.seeds.split(",")))
    from fasdl.platform.limits import MB_PER_VCPU

    W, _, _, _, M = s.merge_config
    if args.vcpus + 1e-9 < W * M / MB_PER_VCPU:
        print(
            f"warning: the merge runs ask for {W * M / MB_PER_VCPU:.2f} vCPUs, more than {args.vcpus:g}",
            file=sys.stderr,
        )

    from fasdl.testing import SeaweedServer

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="fasdl-patterns-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_start = load_avg()
    log: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "command": "python benchmarks/patterns.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "settings": asdict(s),
        "vcpus": args.vcpus,
        "cpu_count": os.cpu_count(),
        "workdir": str(workdir),
        "source": source_info(args.note),
        "store": "SeaweedFS (weed server -s3) on 127.0.0.1, started by the benchmark",
    }
    failed = False
    with SeaweedServer() as server:
        server.make_bucket(BUCKET)
        store_url = server.url(BUCKET, f"patterns-{stamp}")
        if not args.skip_patterns:
            try:
                planned = make_plan(
                    s,
                    workdir=workdir,
                    store_url=store_url,
                    vcpus=args.vcpus,
                    deadline_s=args.deadline,
                    log=log,
                )
                report["plan"] = planned
                report["patterns"] = run_patterns(
                    s, planned, store_url=store_url, stamp=stamp, log=log
                )
                failed |= any(
                    "error" in r
                    for p in report["patterns"]["patterns"].values()
                    for r in p["ladder"]
                )
            except (StepFailed, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                print(f"patterns: {e}", file=sys.stderr)
                report["patterns_error"] = str(e)
                failed = True
        if not args.skip_merge:
            report["merge"] = run_merge(s, store_url=store_url, stamp=stamp, log=log)
            failed |= any("error" in r for r in report["merge"]["runs"])
    report["commands"] = log
    report["load_avg_1min"] = {"start": load_start, "end": load_avg()}
    report["wall_s"] = round(time.monotonic() - started, 1)
    text = format_report(report)
    report["report"] = text.splitlines()
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stem = f"patterns-{'quick-' if args.quick else ''}{stamp}"
        jpath, tpath = RESULTS / f"{stem}.json", RESULTS / f"{stem}.txt"
        jpath.write_text(json.dumps(report, indent=2) + "\n")
        tpath.write_text(report["command"] + "\n\n" + text + "\n")
        report["saved"] = [str(jpath), str(tpath)]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(text)
        if "saved" in report:
            print("saved " + ", ".join(report["saved"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

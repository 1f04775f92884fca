"""``fasdl train``: run a K-Reduce training job from flags, a JSON file, the seed's payload or a plan."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasdl.cli.platform_flags import add_platform_flags
from fasdl.errors import InvalidInput, JobFailed, OverlappingPrefixes
from fasdl.kreduce.config import (
    ARCHES,
    MERGES,
    PATTERNS,
    SEED_FIELDS,
    JobConfig,
    check_payload_keys,
    is_seed_payload,
    read_job_file,
)
from fasdl.perf.transfer import WIRES

if TYPE_CHECKING:
    from fasdl.kreduce.coordinator import JobSummary, ProgressUpdate

# flag dest -> JobConfig field
FLAG_FIELDS = {
    "model": "model",
    "dataset": "dataset",
    "aggregators": "num_aggregators",
    "workers": "num_workers",
    "batch_agg": "batch_size_agg",
    "batch_wor": "batch_size_wor",
    "epochs": "epochs",
    "lr": "lr",
    "momentum": "momentum",
    "merge": "merge",
    "arch": "arch",
    "memory": "memory_mb",
    "func_time": "func_time_s",
    "seed": "seed",
    "store": "store",
    "platform": "platform",
    "job_id": "job_id",
    "pattern": "pattern",
    "comm_timeout": "comm_timeout_s",
    "checkpoint_every": "max_iterations_per_invocation",
    "retries": "retries",
    "wire": "wire",
}


def add_job_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("job (flags override --payload/--plan)")
    g.add_argument(
        "--model",
        help="resnet8 resnet18 resnet34 resnet50 resnet101 mobilenetv2 vgg11 vgg16 cnn mlp, or module:function",
    )
    g.add_argument(
        "--dataset", help="cifar10:PATH (directory or store URL), synthetic[:N] or digits"
    )
    g.add_argument("--aggregators", "-K", type=int, help="K, the number of aggregators (pattern_k)")
    g.add_argument("--workers", "-W", type=int, help="W, the number of workers (num_workers)")
    g.add_argument(
        "--batch-agg", type=int, help="B, the batch size of aggregators (batch_size_agg)"
    )
    g.add_argument(
        "--batch-wor", type=int, help="A, the batch size of non-aggregators (batch_size_wor)"
    )
    g.add_argument("--epochs", type=int)
    g.add_argument("--lr", type=float, help="learning rate (l_r)")
    g.add_argument(
        "--momentum",
        type=float,
        help="SGD momentum (default 0.9; 0 for a seed payload, as the original FasDL trains)",
    )
    g.add_argument(
        "--merge",
        choices=MERGES,
        help="how the aggregators average the workers' models: mean (equal weights, the "
        "default, as the original FasDL; measured better in docs/kreduce.md) or batch (weighted "
        "by batch size)",
    )
    g.add_argument(
        "--wire",
        choices=WIRES,
        help="how the model travels through the store: fp32 (exact, the default), fp16 or bf16 "
        "(half the bytes), int8 (a quarter, with error feedback); see docs/kreduce.md",
    )
    g.add_argument("--memory", type=int, help="function memory in MB, 128-10240 (memory)")
    g.add_argument(
        "--arch",
        choices=ARCHES,
        help="the functions' architecture, for the cost's GB-second price (default x86; "
        "arm64 is Lambda's Graviton, 20 %% cheaper)",
    )
    g.add_argument(
        "--func-time",
        type=float,
        help="function time limit in s, 1-900 (func_time); training checkpoints and re-invokes",
    )
    g.add_argument("--seed", type=int)
    g.add_argument(
        "--pattern",
        choices=PATTERNS,
        help="kreduce (free K; non-aggregators never wait), or the synchronous baselines "
        "scatter_reduce (K=W, A=B) and allreduce (K=1, A=B)",
    )
    g.add_argument(
        "--store",
        help="object store URL: file:///path (default ./fasdl-runs), s3://bucket/prefix, memory://name",
    )
    add_platform_flags(g, default=None, help="function platform (default local)")
    g.add_argument("--job-id", help="name of the job; its objects live under it (default: random)")
    g.add_argument(
        "--comm-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds a worker waits for a peer before giving up (default: derived per iteration, "
        "10x the slowest of the last 5 iterations and at least 120 s; before the first, 120 s + "
        "W x the model's bytes at a pessimistic 1 MB/s per 128 MB of memory (at most 10 MB/s) + "
        "10x the first training step)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="also checkpoint and re-invoke after N iterations (>= 2; default 0: only when func_time runs out)",
    )
    g.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="retry a failed round (a worker crashed, ran out of memory or time) from the last "
        "checkpoints, at most N times per job (default 3)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with K-Reduce on the function platform",
        description="Train a model with K-Reduce: W functions, K of which aggregate the model through the store.",
        epilog="Examples:\n  fasdl train --model cnn --dataset digits -W 4 -K 2 --batch-agg 32 --batch-wor 16 --epochs 2\n"
        "  fasdl train --payload payload.json --store file:///tmp/fasdl   (the seed's trigger payload)\n"
        "  fasdl optimize ... --json > plan.json && fasdl train --plan plan.json --model cnn --dataset digits",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--payload", metavar="FILE", help="JSON job: the seed's trigger payload or our field names"
    )
    p.add_argument("--plan", metavar="FILE", help="the JSON plan of `fasdl optimize --json`")
    add_job_flags(p)
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also write the run's scalars (loss, seconds per phase, accuracy, cost) as "
        "TensorBoard event files under DIR/JOB_ID (needs the tensorboard package)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # JobConfig's field -> the flag's dest, so that errors name the flag (see main.py)
    p.set_defaults(func=run, field_dests={f: dest for dest, f in FLAG_FIELDS.items()})


def _job_files(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """The JSON files of ``--payload`` and ``--plan`` (later ones override earlier ones)."""
    sources = (getattr(args, "payload", None), getattr(args, "plan", None))
    return [(source, read_job_file(source)) for source in sources if source]


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {FLAG_FIELDS[k]: v for k, v in vars(args).items() if k in FLAG_FIELDS and v is not None}


def config_from_args(args: argparse.Namespace, **defaults: Any) -> JobConfig:
    files = _job_files(args)
    with named_as_in_files(files, _flag_overrides(args)):
        return _config(files, args, defaults)


def _config(
    files: list[tuple[str, dict[str, Any]]], args: argparse.Namespace, defaults: dict[str, Any]
) -> JobConfig:
    base: dict[str, Any] = dict(defaults)
    for _, d in files:
        base.update(d)
    overrides = _flag_overrides(args)
    if "store" not in base and "store" not in overrides:
        overrides["store"] = (Path.cwd() / "fasdl-runs").as_uri()
    payload = getattr(args, "payload", None)
    plan = getattr(args, "plan", None)
    # A plan also carries its prediction (predicted_time_s, breakdown, ...): known, ignored. Any
    # other key a file holds is refused, naming the closest known one (a typo would be ignored).
    plan_extras = _plan_keys() if plan else frozenset()
    for source, d in files:
        check_payload_keys(d, extra_keys=plan_extras if source == plan else ())
    seed = any(source == payload and is_seed_payload(d) for source, d in files)
    return JobConfig.from_payload(base, seed_semantics=seed, extra_keys=plan_extras, **overrides)


def _plan_keys() -> frozenset[str]:
    """Every key of ``fasdl optimize --json``'s plan."""
    from fasdl.optimizer.plan import PLAN_JSON_KEYS

    return PLAN_JSON_KEYS


@contextlib.contextmanager
def named_as_in_files(
    files: list[tuple[str, dict[str, Any]]], overrides: dict[str, Any]
) -> Iterator[None]:
    """An ``InvalidInput`` about a field the user gave in a JSON file (and no flag overrode)
    names it as the file does: ``pattern_k in payload.json``. Fields given by flags are left to
    ``main.py``, which names the flag."""
    where: dict[str, str] = {}
    for source, d in files:
        for key in d:
            where[SEED_FIELDS.get(key, key)] = f"{key} in {source}"
        if "data_bucket" in d and "dataset" not in d:  # the seed's CIFAR-10 files (from_payload)
            where["dataset"] = f"data_bucket in {source}"
    try:
        yield
    except InvalidInput as e:
        # Two prefixes that overlap: name the one the user gave (the message names both).
        other = [e.other_field] if isinstance(e, OverlappingPrefixes) else []
        for name in [e.field, *other]:
            if name in where and name not in overrides:
                e.named_as(where[name])
                break
        raise


def run(args: argparse.Namespace) -> int:
    files = _job_files(args)
    with named_as_in_files(files, _flag_overrides(args)):  # also the errors found with the data
        cfg = _config(files, args, {})
        if args.tensorboard is not None:
            from fasdl.reports.tensorboard import summary_writer_class

            summary_writer_class()  # the package is there, before the job starts
        plan = next((d for source, d in files if source == args.plan), None) if args.plan else None
        return run_and_report(
            cfg,
            as_json=args.json,
            show_progress=not args.no_progress,
            tensorboard=args.tensorboard,
            plan=plan,
        )


def run_and_report(
    cfg: JobConfig,
    *,
    as_json: bool,
    show_progress: bool,
    tensorboard: str | None = None,
    plan: Mapping[str, Any] | None = None,
) -> int:
    """Run the job with a progress bar, then print its summary (as one JSON object with ``as_json``).

    With the ``plan`` it ran (``fasdl optimize --json``), the plan's predicted time and cost are
    set against the measured ones, term by term, printed and stored (``Keys.prediction()``)."""
    from fasdl.kreduce.coordinator import run_job

    check = None
    if plan is not None and "predicted_time_s" in plan:
        the_plan = plan

        def check(summary: JobSummary) -> dict[str, Any]:
            return check_plan(summary, the_plan)

    return drive_and_report(
        lambda progress: run_job(cfg, progress=progress),
        job_id=cfg.job_id,
        store=cfg.store,
        as_json=as_json,
        show_progress=show_progress,
        tensorboard=tensorboard,
        check=check,
    )


def check_plan(summary: JobSummary, plan: Mapping[str, Any]) -> dict[str, Any]:
    """The plan's prediction against the finished job, written to ``output/<job>/prediction.json``
    and returned (``PredictionCheck.to_dict``)."""
    from fasdl.kreduce.keys import Keys
    from fasdl.kreduce.logs import loop_s, read_worker_logs, straggler_s
    from fasdl.optimizer.accuracy import JobMeasurement, check_prediction
    from fasdl.store import open_store

    cfg = JobConfig.from_dict(summary.config)
    store = open_store(cfg.store)
    keys = Keys.for_job(cfg)
    logs = read_worker_logs(store, keys)
    phases = summary.phases_s
    evaluation = float(phases.get("evaluation", 0.0))
    measured = JobMeasurement(
        # the coordinator's wall time ends before the final evaluation, which the user waits for
        time_s=summary.wall_time_s + evaluation,
        cost_usd=summary.cost_usd["total"],
        loop_s=loop_s(logs[0]) if 0 in logs else 0.0,
        straggler_s=straggler_s(logs) * summary.iterations if 0 in logs else 0.0,
        checkpoint_s=float(phases.get("checkpoint", 0.0)),
        evaluation_s=evaluation,
        rounds=summary.rounds,
        functions_usd=summary.cost_usd["functions"],
        store_usd=summary.cost_usd["storage"],
        requests=summary.requests,
    )
    result = check_prediction(plan, measured).to_dict()
    store.put(keys.prediction(), json.dumps(result, indent=2).encode())
    return result


def drive_and_report(
    start: Callable[[Callable[[ProgressUpdate], None]], JobSummary],
    *,
    job_id: str,
    store: str,
    as_json: bool,
    show_progress: bool,
    tensorboard: str | None = None,
    check: Callable[[JobSummary], dict[str, Any]] | None = None,
) -> int:
    """Run ``start(progress)`` (a new or a resumed job) with a progress bar, write its report into
    the store (and TensorBoard's event files into ``tensorboard``) and print the summary.

    Ctrl-C or SIGTERM stops the workers and keeps the checkpoints; the message says how to go on.
    """
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run_with_progress(start, job_id=job_id, show=show_progress)
    except JobFailed:  # out of retries: the report shows where and why (its timeline)
        _write_failed_report(job_id, store)
        raise
    except KeyboardInterrupt:
        print(
            f"fasdl: job {job_id} interrupted; its checkpoints are kept. Continue it with\n"
            f"  fasdl resume {job_id} --store {store}",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    # The plan's prediction against the run first: the report shows prediction.json.
    prediction = check(summary) if check is not None else None
    extra = _write_views(job_id, store, tensorboard)
    if as_json:
        out = {**summary.to_dict(), **extra}
        if prediction is not None:
            out["prediction"] = prediction
        print(json.dumps(out))
    else:
        print_summary(summary)
        if prediction is not None:
            print_prediction(prediction)
        for what, where in extra.items():
            print(f"  {what:<15} {where}")
    return 0


def print_prediction(prediction: Mapping[str, Any]) -> None:
    """The plan's prediction next to the measurement (``check_plan``'s dict), term by term."""

    def pct(x: float | None) -> str:
        return f"{100 * x:.1f} %" if x is not None else "n/a"

    p = prediction
    lines = [
        f"  predicted       {p['time_s']:.1f} s, ${p['cost_usd']:.6f}; measured "
        f"{p['measured_time_s']:.1f} s, ${p['measured_cost_usd']:.6f}; accuracy time "
        f"{pct(p['accuracy_time'])}, cost {pct(p['accuracy_cost'])}",
        f"    {'term':<14} {'predicted':>12} {'measured':>12} {'accuracy':>9}",
    ]
    for name, t in p["terms"].items():
        lines.append(
            f"    {name:<14} {t['predicted']:>12.6g} {t['measured']:>12.6g} {pct(t['accuracy']):>9}"
        )
    print("\n".join(lines))


def _write_failed_report(job_id: str, store_url: str) -> None:
    from fasdl.reports import make_report
    from fasdl.store import open_store

    try:
        where = make_report(open_store(store_url), job_id)
    except Exception as e:  # the job's failure is the news; its report is a view of it
        print(f"fasdl: warning: could not write the report of job {job_id}: {e}", file=sys.stderr)
    else:
        print(f"fasdl: the report of job {job_id}: {where}", file=sys.stderr)


def _write_views(job_id: str, store_url: str, tensorboard: str | None) -> dict[str, str]:
    """The finished job's report.html in its store (``report``), and its TensorBoard event files
    (``tensorboard``) when asked: where they are. The job has succeeded by now, so a report that
    cannot be written is a warning (``fasdl report`` tries again), not a failure."""
    from fasdl.reports import make_report, read_run
    from fasdl.reports.tensorboard import write_tensorboard
    from fasdl.store import open_store

    out: dict[str, str] = {}
    store = open_store(store_url)
    try:
        out["report"] = make_report(store, job_id)
    except Exception as e:  # the job is done; its report is a view of it
        print(f"fasdl: warning: could not write the report of job {job_id}: {e}", file=sys.stderr)
        out["report"] = f"not written ({e}); try `fasdl report {job_id} --store {store_url}`"
    if tensorboard is not None:
        out["tensorboard"] = str(write_tensorboard(read_run(store, job_id), tensorboard))
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_with_progress(
    start: Callable[[Callable[[ProgressUpdate], None]], JobSummary],
    *,
    job_id: str,
    show: bool = True,
) -> JobSummary:
    from tqdm import tqdm

    bar = tqdm(
        total=None,
        unit="it",
        desc=job_id,
        disable=not show,
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def update(p: ProgressUpdate) -> None:
        if bar.total is None:
            bar.reset(total=p.total_iterations)
        bar.n = p.iteration
        if p.retry:
            bar.write(f"{job_id}: {p.retry}; going on from iteration {p.iteration}", sys.stderr)
        bar.set_postfix(
            epoch=p.epoch + 1,
            loss=f"{p.loss:.3f}" if p.loss is not None else "-",
            s_it=f"{p.seconds_per_iteration:.2f}" if p.seconds_per_iteration else "-",
            cost=f"${p.cost_usd:.5f}",
            round=p.round,
        )

    try:
        return start(update)
    finally:
        bar.close()


def print_summary(s: JobSummary) -> None:
    c = s.config
    req = ", ".join(f"{k} {v:,}" for k, v in s.requests.items())
    acc = f"{100 * s.test_accuracy:.2f} %" if s.test_accuracy is not None else "n/a"
    lines = [
        f"job {s.job_id}: {c['model']} on {c['dataset']}, W={c['num_workers']} K={c['num_aggregators']} "
        f"B={c['batch_size_agg']} A={c['batch_size_wor']}, {c['memory_mb']} MB, {c['pattern']}",
        f"  iterations      {s.iterations} ({s.iterations_per_epoch}/epoch, {s.rounds} invocation round(s), {s.invocations} invocations)",
        f"  wall time       {s.wall_time_s:.1f} s",
        f"  training        SGD lr {c['lr']:g}, momentum {c['momentum']:g}, merge {c['merge']}"
        + (", synchronous" if c["pattern"] != "kreduce" else "")
        + f", wire {c.get('wire', 'fp32')}",
        f"  train / comm    {s.train_time_s:.1f} s / {s.comm_time_s:.1f} s per worker",
        f"  billed          {s.billed_gb_s:.2f} GB-s",
        f"  requests        {req}",
        f"  cost            ${s.cost_usd['total']:.6f} (functions ${s.cost_usd['functions']:.6f} at {c['arch']} prices, storage ${s.cost_usd['storage']:.6f})",
        f"  final loss      {s.final_loss:.4f}"
        if s.final_loss is not None
        else "  final loss      n/a",
        f"  test accuracy   {acc}",
        f"  outputs         {s.outputs['store']}/{s.outputs['model']} (model), {s.outputs['summary']}, {s.outputs['logs']}",
    ]
    for r in s.retries:
        who = "the round" if r["worker"] is None else f"worker {r['worker']}"
        lines.append(
            f"  retried         round {r['round']}: {who} failed, {r['iterations_lost']} "
            f"iteration(s) lost: {r['reason']}"
        )
    print("\n".join(lines))

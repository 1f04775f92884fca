"""``fasdl profile``: time a model on the function platform at each (memory, batch size) pair."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasdl.cli.platform_flags import add_platform_flags
from fasdl.errors import InvalidInput

if TYPE_CHECKING:
    from fasdl.profiler.profile import PairResult, ProfileConfig, ProfileReport
    from fasdl.profiler.storage import TransferOutcome

EPILOG = """\
Each pair is one function invocation with that memory size (its CPU share follows the memory,
as on Lambda), run one at a time. Inside, the function builds the model on real samples of the
dataset, runs --warmup iterations, then takes --iterations timed samples of training (forward,
backward, SGD step) and of transformation (the model's flat vector cut into K chunks and turned
into bytes, what a K-Reduce worker sends); each sample is the mean over a block of iterations
lasting at least --sample-s, and the median is recorded. Each row is appended to --out as soon
as it is measured; a pair that runs out of memory is recorded as out_of_memory and the run goes
on. Exit code 0 if at least one pair was measured, 1 if none was, 2 for bad input.

examples:
  fasdl profile --model cnn --memory 1024,1769,3008 --batch 16,32,64 --out profile.csv
  fasdl profile --model resnet18 --memory 1769,2654,3538 --batch 16,32,64 --store file:///tmp/fasdl \\
      --out profile.csv --storage --storage-out transfer.csv
  fasdl fit profile.csv --transfer transfer.csv --out coeffs.json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "profile",
        help="time a model on the function platform at several memory and batch sizes",
        description="Profile a model on the function platform: one invocation per (memory, batch size) "
        "pair; training and transformation time, peak memory and billed time, the function's start-up and "
        "the spread of single iterations (for the whole job's prediction), written as each pair finishes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="resnet8 resnet18 resnet34 resnet50 resnet101 mobilenetv2 vgg11 vgg16 cnn mlp, or module:function",
    )
    p.add_argument(
        "--memory",
        required=True,
        type=_int_list("memory"),
        metavar="MB,...",
        help="memory sizes, 128-10240 MB",
    )
    p.add_argument(
        "--batch", required=True, type=_int_list("batch"), metavar="B,...", help="batch sizes"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="CSV",
        help="the profile CSV (rows are appended as measured)",
    )
    p.add_argument(
        "--resume", action="store_true", help="--out exists: measure only the pairs it lacks"
    )
    add_platform_flags(p, default="local", help="function platform (default local)")
    p.add_argument(
        "--store",
        help="object store URL for the data sample: file:///path (default ./fasdl-runs), s3://bucket/prefix",
    )
    p.add_argument(
        "--dataset", default="synthetic", help="synthetic[:N] (default), digits, or cifar10:PATH"
    )
    p.add_argument(
        "--iterations", type=int, default=5, metavar="N", help="timed samples per pair (default 5)"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        metavar="N",
        help="untimed training iterations first (default 2)",
    )
    p.add_argument(
        "--sample-s",
        type=float,
        default=0.5,
        metavar="S",
        help="each timed sample lasts at least this long (default 0.5)",
    )
    p.add_argument(
        "--chunks",
        type=int,
        default=2,
        metavar="K",
        help="K, the chunks the model is cut into (default 2)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=900,
        metavar="S",
        help="timeout of each function, 1-900 s (default 900)",
    )
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("transfer profile of the store")
    g.add_argument(
        "--storage",
        action="store_true",
        help="also time puts and gets of objects from a function at each memory size",
    )
    g.add_argument(
        "--storage-out",
        metavar="CSV",
        help="where to write it (default: transfer.csv next to --out)",
    )
    g.add_argument(
        "--sizes",
        type=_float_list("sizes"),
        default=None,
        metavar="MB,...",
        help="object sizes in MB (default 1,4,16,64)",
    )
    g.add_argument(
        "--storage-repeats",
        type=int,
        default=3,
        metavar="N",
        help="puts and gets per size; the median is kept (default 3)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # ProfileConfig's field -> the flag's dest, so that errors name the flag (see main.py)
    field_dests = {"memory_mb": "memory", "batch_sizes": "batch", "timeout_s": "timeout"}
    p.set_defaults(func=run, field_dests=field_dests)


def _int_list(field: str) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{field}: {text!r} is not a comma-separated list of whole numbers"
            ) from None

    return parse


def _float_list(field: str) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        try:
            return [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{field}: {text!r} is not a comma-separated list of numbers"
            ) from None

    return parse


def run(args: argparse.Namespace) -> int:
    from fasdl.profiler.profile import ProfileConfig, check_config, check_out
    from fasdl.profiler.storage import (
        DEFAULT_SIZES_MB,
        check_repeats,
        check_sizes_mb,
        check_transfer_out,
    )

    cfg = ProfileConfig(
        model=args.model,
        memory_mb=tuple(args.memory),
        batch_sizes=tuple(args.batch),
        store=args.store or (Path.cwd() / "fasdl-runs").as_uri(),
        platform=args.platform,
        dataset=args.dataset,
        iterations=args.iterations,
        warmup=args.warmup,
        timeout_s=args.timeout,
        seed=args.seed,
        chunks=args.chunks,
        sample_s=args.sample_s,
    )
    # Everything is checked before anything runs, the storage options included.
    check_config(cfg)
    check_out(args.out, resume=args.resume, model=cfg.model)
    storage_out = None
    sizes = check_sizes_mb(args.sizes if args.sizes is not None else DEFAULT_SIZES_MB)
    check_repeats(args.storage_repeats)
    if args.storage:
        storage_out = check_transfer_out(
            args.storage_out or Path(args.out).resolve().parent / "transfer.csv"
        )
    elif args.storage_out or args.sizes is not None:
        raise InvalidInput("storage", "--storage-out and --sizes need --storage", "add --storage")

    report = _profile_with_progress(cfg, args)
    transfer = None
    if storage_out is not None:
        transfer = _transfer_with_progress(cfg, sizes, args, storage_out)

    if args.json:
        d = report.to_dict()
        if transfer is not None:
            d["transfer"] = {
                "out": str(storage_out),
                "memory_sizes": [_outcome_dict(o) for o in transfer],
            }
        print(json.dumps(d, indent=2, allow_nan=False))
    else:
        _print_summary(report, transfer, storage_out)
    for r in report.results:
        if r.error and not r.resumed:
            print(
                f"fasdl profile: {r.sample.memory_mb} MB, batch {r.sample.batch_size}: {r.sample.status}: {r.error.splitlines()[0]}",
                file=sys.stderr,
            )
    if report.count("ok") == 0:
        print("fasdl profile: no pair was measured", file=sys.stderr)
        return 1
    return 0


def _profile_with_progress(cfg: ProfileConfig, args: argparse.Namespace) -> ProfileReport:
    from tqdm import tqdm

    from fasdl.profiler.profile import run_profile

    bar = tqdm(
        total=len(cfg.pairs),
        unit="pair",
        desc=f"profile {cfg.model}",
        disable=args.no_progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def on_start(memory_mb: int, batch_size: int) -> None:
        bar.set_postfix_str(f"{memory_mb} MB, B={batch_size}")

    def on_result(r: PairResult) -> None:
        bar.update(1)
        if args.no_progress:
            return
        s = r.sample
        times = (
            f"train {s.train_s * 1000:.1f} ms  trans {s.trans_s * 1000:.3g} ms"
            if s.train_s and s.trans_s
            else s.status
        )
        peak = f"  peak {s.peak_memory_mb:.0f} MB" if s.peak_memory_mb else ""
        billed = f"  billed {s.billed_ms / 1000:.1f} s" if s.billed_ms else ""
        bar.write(
            f"  {s.memory_mb:>6} MB  B={s.batch_size:<5} {times}{peak}{billed}", file=sys.stderr
        )

    try:
        report = run_profile(
            cfg, args.out, resume=args.resume, on_start=on_start, on_result=on_result
        )
    finally:
        bar.close()
    return report


def _transfer_with_progress(
    cfg: ProfileConfig, sizes: tuple[float, ...], args: argparse.Namespace, storage_out: Path
) -> list[TransferOutcome]:
    from tqdm import tqdm

    from fasdl.profiler.storage import profile_transfer

    bar = tqdm(
        total=len(cfg.memory_mb),
        unit="memory size",
        desc="transfer",
        disable=args.no_progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def on_result(o: TransferOutcome) -> None:
        bar.update(1)
        if o.error:
            bar.write(
                f"fasdl profile: transfer at {o.memory_mb} MB: {o.state}: {o.error.splitlines()[0]}",
                file=sys.stderr,
            )

    try:
        return profile_transfer(
            storage_out,
            store=cfg.store,
            memory_mb=cfg.memory_mb,
            platform=cfg.platform,
            sizes_mb=sizes,
            repeats=args.storage_repeats,
            timeout_s=cfg.timeout_s,
            on_result=on_result,
        )
    finally:
        bar.close()


def _outcome_dict(o: TransferOutcome) -> dict[str, Any]:
    return {
        "memory_mb": o.memory_mb,
        "state": o.state,
        "billed_ms": o.billed_ms,
        "peak_memory_mb": o.peak_memory_mb,
        "error": o.error,
        "rows": list(o.rows),
    }


def _print_summary(
    report: ProfileReport, transfer: list[TransferOutcome] | None, storage_out: Path | None
) -> None:
    from fasdl.profiler.profile import format_table

    m = report.model
    counts = ", ".join(
        f"{report.count(s)} {s}" for s in ("ok", "out_of_memory", "failed") if report.count(s)
    )
    lines = [
        f"profile {m.name}: {m.num_params:,} parameters, {m.model_size_mb:.3g} MB vector, input {m.input_shape}; "
        f"{len(report.results)} pairs ({counts}) in {report.wall_s:.0f} s",
        "",
        format_table(report),
        "",
        f"wrote {report.out}",
    ]
    if transfer is not None and storage_out is not None:
        lines.insert(-1, _transfer_table(transfer))
        lines.insert(-1, "")
        lines.append(f"wrote {storage_out}")
    fit = (
        f"fasdl fit {report.out}"
        + (f" --transfer {storage_out}" if storage_out else "")
        + " --out coeffs.json"
    )
    lines.append(f"next: {fit}")
    print("\n".join(lines))


def _transfer_table(outcomes: list[TransferOutcome]) -> str:
    lines = ["transfer s (upload / download, median)"]
    for o in outcomes:
        if not o.rows:
            lines.append(f"{o.memory_mb:>10} MB  {o.state}")
            continue
        cells = "  ".join(
            f"{r['object_mb']:g} MB {r['upload_s']:.3g}/{r['download_s']:.3g}" for r in o.rows
        )
        lines.append(f"{o.memory_mb:>10} MB  {cells}")
    return "\n".join(lines)

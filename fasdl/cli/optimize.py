"""``fasdl optimize``: the cheapest configuration that meets a deadline (or the fastest within a
budget), from the profiler's coeffs.json. ``--json > plan.json`` feeds ``fasdl train --plan``."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import TYPE_CHECKING, Any

from fasdl.errors import InvalidInput
from fasdl.platform.limits import MAX_MEMORY_MB, MAX_TIMEOUT_S, MIN_MEMORY_MB

if TYPE_CHECKING:
    from fasdl.perf.coefficients import Coefficients
    from fasdl.perf.transfer import TransferModel


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fasdl.optimizer.grid import DEFAULT_MEMORY_STEP_MB
    from fasdl.optimizer.model import DEFAULT_GAMMA, DEFAULT_MAX_GLOBAL_BATCH
    from fasdl.optimizer.search import DEFAULT_MAX_WORKERS
    from fasdl.perf.transfer import WIRES

    p = sub.add_parser(
        "optimize",
        help="choose workers, aggregators, memory and batch sizes for a deadline",
        description="Choose the cheapest K-Reduce configuration that meets a deadline (or the fastest "
        "within a budget) under the fitted time and cost model.",
    )
    p.add_argument(
        "--coeffs",
        required=True,
        metavar="FILE",
        help="coeffs.json from `fasdl fit` (or written by hand)",
    )
    p.add_argument("--epochs", required=True, type=int, metavar="E")
    p.add_argument(
        "--samples", required=True, type=int, metavar="D", help="training samples (CIFAR-10: 50000)"
    )
    p.add_argument(
        "--test-samples",
        type=int,
        default=0,
        metavar="N",
        help="test samples of the final evaluation (CIFAR-10: 10000; synthetic:D has D/5), "
        "priced with coeffs' eval_s_per_sample (default 0: no evaluation)",
    )
    p.add_argument(
        "--deadline", type=float, metavar="SECONDS", help="time constraint (with --objective cost)"
    )
    p.add_argument(
        "--budget", type=float, metavar="USD", help="cost constraint (with --objective time)"
    )
    p.add_argument(
        "--objective",
        choices=["cost", "time"],
        default="cost",
        help="minimise cost under --deadline (default) or time under --budget",
    )
    p.add_argument(
        "--min-memory",
        type=int,
        metavar="MB",
        help=f"smallest function memory (default: coeffs' min_memory_mb, else {MIN_MEMORY_MB}); "
        "never below coeffs' min_memory_mb",
    )
    p.add_argument(
        "--max-memory",
        type=int,
        default=MAX_MEMORY_MB,
        metavar="MB",
        help=f"largest function memory (default {MAX_MEMORY_MB})",
    )
    p.add_argument(
        "--memory-step",
        type=int,
        default=DEFAULT_MEMORY_STEP_MB,
        metavar="MB",
        help=f"memory grid step (default {DEFAULT_MEMORY_STEP_MB})",
    )
    p.add_argument(
        "--max-global-batch",
        type=int,
        default=DEFAULT_MAX_GLOBAL_BATCH,
        metavar="N",
        help=f"cap on the global batch (default {DEFAULT_MAX_GLOBAL_BATCH})",
    )
    p.add_argument(
        "--max-workers",
        type=int,
        default=DEFAULT_MAX_WORKERS,
        metavar="W",
        help=f"most functions at once (default {DEFAULT_MAX_WORKERS}, Lambda's default concurrency)",
    )
    p.add_argument(
        "--max-vcpus",
        type=float,
        metavar="N",
        help="cap on the vCPUs of the functions running at once, W x memory/1769 (on the local "
        "platform: this machine's cores, so that timings stay faithful; default no cap)",
    )
    p.add_argument(
        "--gamma",
        type=float,
        default=DEFAULT_GAMMA,
        help=f"B/(B+b): sets the aggregators' batch (default {DEFAULT_GAMMA})",
    )
    p.add_argument(
        "--func-time",
        type=float,
        default=float(MAX_TIMEOUT_S),
        metavar="SECONDS",
        help=f"function time limit (default {MAX_TIMEOUT_S})",
    )
    p.add_argument(
        "--transfer",
        metavar="aws|FILE",
        help="transfer-time model: a preset or a CSV (default: the one in coeffs.json, else aws)",
    )
    p.add_argument(
        "--prices",
        default="aws",
        metavar="aws|FILE",
        help="price table: a preset or a JSON file (default aws)",
    )
    p.add_argument(
        "--arch",
        choices=["x86", "arm64"],
        default="x86",
        help="function architecture, for its GB-second price",
    )
    p.add_argument(
        "--wire",
        choices=WIRES,
        default="fp32",
        help="the wire format the plan is for (`fasdl train --wire`): fp16/bf16 halve the bytes "
        "each transfer moves, int8 about quarters them; the plan carries it",
    )
    p.add_argument(
        "--heuristic",
        choices=["improved", "paper"],
        default=None,
        help="search heuristic (default improved; paper = the FasDL paper's)",
    )
    p.add_argument(
        "--exhaustive",
        action="store_true",
        help="search every configuration instead of a heuristic",
    )
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write cost against deadline for K-Reduce, ScatterReduce and AllReduce",
    )
    # the optimizer's field -> the flag's dest, so that errors name the flag (see main.py)
    p.set_defaults(func=run, field_dests={"func_time_s": "func_time"})


def run(args: argparse.Namespace) -> int:
    from fasdl.optimizer.grid import memory_grid
    from fasdl.optimizer.model import Scenario
    from fasdl.optimizer.plan import optimize, pattern_frontiers, search_space
    from fasdl.perf.coefficients import read_coefficients
    from fasdl.pricing import load_prices

    if args.objective == "cost":
        if args.deadline is None:
            raise InvalidInput(
                "deadline", "missing", "give --deadline SECONDS (or --objective time --budget USD)"
            )
        if args.budget is not None:
            raise InvalidInput(
                "budget", "only with --objective time", "drop --budget, or use --objective time"
            )
    else:
        if args.budget is None:
            raise InvalidInput("budget", "missing", "give --budget USD with --objective time")
        if args.deadline is not None:
            raise InvalidInput(
                "deadline", "only with --objective cost", "drop --deadline, or use --objective cost"
            )
    if args.exhaustive and args.heuristic is not None:
        raise InvalidInput(
            "exhaustive",
            "--exhaustive searches every configuration: it takes no --heuristic",
            "drop one of them",
        )
    method = "exhaustive" if args.exhaustive else (args.heuristic or "improved")

    coeffs = read_coefficients(args.coeffs)
    transfer = _transfer(args.transfer, coeffs)
    prices = load_prices(args.prices, arch=args.arch)
    scenario = Scenario(
        coeffs=coeffs,
        prices=prices,
        samples=args.samples,
        epochs=args.epochs,
        test_samples=args.test_samples,
        max_global_batch=args.max_global_batch,
        gamma=args.gamma,
        func_time_s=args.func_time,
        max_vcpus=args.max_vcpus,
        wire=args.wire,
    )
    min_memory = (
        args.min_memory
        if args.min_memory is not None
        else max(MIN_MEMORY_MB, coeffs.min_memory_mb or MIN_MEMORY_MB)
    )
    memories = memory_grid(min_memory, args.max_memory, args.memory_step)
    plan = optimize(
        scenario,
        transfer,
        deadline_s=args.deadline,
        budget_usd=args.budget,
        method=method,
        memories=memories,
        max_workers=args.max_workers,
    )
    if args.plot:
        grid = search_space(scenario, transfer, memories, args.max_workers)
        from fasdl.optimizer.plot import plot_frontiers

        frontiers = pattern_frontiers(
            scenario, grid, exhaustive=args.exhaustive, max_workers=args.max_workers
        )
        plot_frontiers(args.plot, frontiers, deadline_s=args.deadline)
    for warning in plan.warnings:
        warnings.warn(warning, stacklevel=1)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(format_plan(plan.to_dict()))
        if args.plot:
            print(f"\nplot: {args.plot}")
    return 0


def _transfer(spec: str | None, coeffs: Coefficients) -> TransferModel:
    """``--transfer`` if given, else the coefficients' own model (checked when read), else aws."""
    from fasdl.perf.transfer import load_transfer

    if spec is not None:
        return load_transfer(spec)
    model = coeffs.transfer_model()
    return model if model is not None else load_transfer("aws")


def _hours(seconds: float) -> str:
    return f"{seconds:,.0f} s ({seconds / 3600:.2f} h)"


def format_plan(d: dict[str, Any]) -> str:
    b = d["breakdown"]
    per = b["per_iteration_s"]
    cost = b["cost_usd"]
    req = b["requests"]
    constraint = (
        f"deadline {_hours(d['deadline_s'])}"
        if d["objective"] == "cost"
        else f"budget ${d['budget_usd']:,.2f}"
    )
    lines = [
        f"Plan ({'cheapest within the ' if d['objective'] == 'cost' else 'fastest within the '}{constraint}):",
        f"  batch_size_agg  {d['batch_size_agg']}",
        f"  num_workers     {d['num_workers']}",
        f"  memory          {d['memory']}",
        f"  batch_size_wor  {d['batch_size_wor']}",
        f"  pattern_k       {d['pattern_k']}",
        f"  wire            {d.get('wire', 'fp32')}",
        f"Predicted for {d['epochs']} epoch(s) of {d['samples']:,} samples: {_hours(d['predicted_time_s'])}, ${d['predicted_cost_usd']:,.4f}",
        f"  {b['iterations']:,} iterations of {b['iteration_s']:.2f} s, global batch {b['global_batch']}, "
        f"{b['invocations_per_worker']} invocation(s) per worker",
        "  per iteration: " + ", ".join(f"{k} {v:.3f} s" for k, v in per.items()),
        "  whole job: " + ", ".join(f"{k} {v:,.1f} s" for k, v in b.get("job_s", {}).items()),
        f"  cost: functions ${cost['functions']:,.4f} ({b['gb_seconds']:,.0f} GB-s) + invocations ${cost['invocations']:,.4f}"
        f" + store ${cost['store']:,.4f} ({', '.join(f'{k} {v:,}' for k, v in req.items() if v)})",
        f"The synchronous baselines at the same num_workers={d['num_workers']}, memory={d['memory']}"
        f" and global batch (W equal batches):",
    ]
    for name, key in (
        ("ScatterReduce (K = W)", "scatter_reduce"),
        ("AllReduce (K = 1)", "all_reduce"),
    ):
        o = d[key]
        line = (
            f"  {name:<22} {o['time_s']:>12,.0f} s  ${o['cost_usd']:,.4f}"
            f"  (batch {o['batch_size_agg']} each, global {o['global_batch']})"
        )
        if o["time_saved_pct"] is not None:
            line += (
                f"  (plan saves {o['time_saved_pct']:.1f} % time, {o['cost_saved_pct']:.1f} % cost)"
            )
        if o["problem"]:
            line += f"  [cannot run: {o['problem']}]"
        lines.append(line)
    s = d["search"]
    lines.append(f"Search: {s['method']}, {s['evaluations']:,} evaluations in {s['seconds']:.3f} s")
    return "\n".join(lines)

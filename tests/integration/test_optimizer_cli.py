"""``fasdl optimize`` as a user runs it: a subprocess, its output and its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FASDL = [str(Path(sys.executable).with_name("fasdl"))]
COEFFS = {"a": 600, "b": 10, "m": 200, "k1": 0.5, "k2": 0.0, "model_size_mb": 45}
PLAN_FIELDS = ("batch_size_agg", "num_workers", "memory", "batch_size_wor", "pattern_k")


def fasdl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(FASDL + list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def coeffs(tmp_path: Path) -> Path:
    path = tmp_path / "coeffs.json"
    path.write_text(json.dumps(COEFFS))
    return path


def base(coeffs: Path, *extra: str) -> list[str]:
    return [
        "optimize",
        "--coeffs",
        str(coeffs),
        "--epochs",
        "10",
        "--samples",
        "50000",
        "--memory-step",
        "256",
        *extra,
    ]


def test_human_output(coeffs, tmp_path):
    r = fasdl(*base(coeffs, "--deadline", "14400"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for word in (
        *PLAN_FIELDS,
        "ScatterReduce",
        "AllReduce",
        "evaluations",
        "per iteration",
        "functions $",
    ):
        assert word in r.stdout


def test_json_plan_feeds_train(coeffs, tmp_path):
    r = fasdl(*base(coeffs, "--deadline", "14400", "--json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    for key in (
        *PLAN_FIELDS,
        "predicted_time_s",
        "predicted_cost_usd",
        "breakdown",
        "scatter_reduce",
        "all_reduce",
        "search",
        "epochs",
        "samples",
    ):
        assert key in plan
    assert all(isinstance(plan[k], int) and plan[k] >= 1 for k in PLAN_FIELDS)
    assert 1 <= plan["pattern_k"] <= plan["num_workers"]
    assert plan["predicted_time_s"] <= 14400
    assert plan["scatter_reduce"]["cost_usd"] > 0 and plan["all_reduce"]["time_s"] > 0
    assert plan["search"]["evaluations"] > 0 and plan["search"]["seconds"] >= 0
    assert (plan["epochs"], plan["samples"]) == (10, 50000)
    b = plan["breakdown"]
    assert b["cost_usd"]["total"] == pytest.approx(plan["predicted_cost_usd"])
    assert b["iterations"] * b["iteration_s"] == pytest.approx(b["job_s"]["loop"])
    # the whole job: the loop and the terms around it (checkpoints between the rounds here)
    assert sum(b["job_s"][k] for k in ("loop", "startup", "checkpoint", "evaluation")) == (
        pytest.approx(plan["predicted_time_s"])
    )


def test_looser_deadline_is_never_dearer_and_paper_and_exhaustive_run(coeffs, tmp_path):
    costs = []
    for deadline in ("7200", "14400", "28800"):
        r = fasdl(*base(coeffs, "--deadline", deadline, "--json"), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        costs.append(json.loads(r.stdout)["predicted_cost_usd"])
    assert costs == sorted(costs, reverse=True)
    exact = json.loads(
        fasdl(*base(coeffs, "--deadline", "14400", "--json", "--exhaustive"), cwd=tmp_path).stdout
    )
    assert exact["search"]["method"] == "exhaustive"
    assert costs[1] <= exact["predicted_cost_usd"] * 1.01
    paper = fasdl(
        *base(coeffs, "--deadline", "14400", "--json", "--heuristic", "paper"), cwd=tmp_path
    )
    assert paper.returncode == 0, paper.stderr
    assert json.loads(paper.stdout)["search"]["method"] == "paper"


def test_time_objective_with_budget(coeffs, tmp_path):
    r = fasdl(*base(coeffs, "--objective", "time", "--budget", "20", "--json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predicted_cost_usd"] <= 20


def test_infeasible_exits_3_with_the_fastest_time(coeffs, tmp_path):
    r = fasdl(*base(coeffs, "--deadline", "60"), cwd=tmp_path)
    assert r.returncode == 3
    assert "no plan meets the deadline" in r.stderr and "fastest plan takes" in r.stderr
    assert r.stdout == ""


def test_plot(coeffs, tmp_path):
    out = tmp_path / "frontier.png"
    r = fasdl(*base(coeffs, "--deadline", "14400", "--plot", str(out)), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_transfer_and_prices_files(coeffs, tmp_path):
    from fasdl.perf.transfer import load_transfer, write_transfer_csv

    table = tmp_path / "transfer.csv"
    write_transfer_csv(load_transfer("aws").rows(), table)  # type: ignore[attr-defined]
    prices = json.loads((Path(__file__).parents[2] / "fasdl/presets/aws-prices.json").read_text())
    prices["function"]["usd_per_gb_second"]["x86"] *= 2
    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps(prices))
    args = base(coeffs, "--deadline", "14400", "--json", "--transfer", str(table))
    one = json.loads(fasdl(*args, cwd=tmp_path).stdout)
    two = json.loads(fasdl(*args, "--prices", str(price_file), cwd=tmp_path).stdout)
    assert two["breakdown"]["cost_usd"]["functions"] > one["breakdown"]["cost_usd"]["functions"]
    arm = json.loads(fasdl(*args, "--arch", "arm64", cwd=tmp_path).stdout)
    assert arm["predicted_cost_usd"] < one["predicted_cost_usd"]


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"drop": "k2"}, "k2"),
        ({"deadline": "0"}, "deadline"),
        ({"deadline": "-5"}, "deadline"),
        ({"epochs": "0"}, "epochs"),
        ({"min-memory": "8192", "max-memory": "4096"}, "--min-memory:"),
        ({"transfer": "gcp"}, "transfer"),
        ({"prices": "nowhere.json"}, "prices"),
        ({"gamma": "1.5"}, "gamma"),
        ({"max-vcpus": "0"}, "--max-vcpus:"),
        ({"max-vcpus": "nan"}, "--max-vcpus:"),
    ],
)
def test_bad_input_exits_2(coeffs, tmp_path, change, needle):
    d = dict(COEFFS)
    if "drop" in change:
        del d[change.pop("drop")]
        coeffs.write_text(json.dumps(d))
    opts = {"epochs": "10", "deadline": "14400"} | change
    args = ["optimize", "--coeffs", str(coeffs), "--samples", "50000"]
    for k, v in opts.items():
        args += [f"--{k}", v]
    r = fasdl(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr


def test_missing_coeffs_file_and_objective_mismatch(tmp_path, coeffs):
    r = fasdl(
        "optimize",
        "--coeffs",
        "nope.json",
        "--epochs",
        "1",
        "--samples",
        "100",
        "--deadline",
        "100",
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "no file" in r.stderr
    r = fasdl(*base(coeffs, "--objective", "time", "--deadline", "100"), cwd=tmp_path)
    assert r.returncode == 2 and "budget" in r.stderr


def test_max_vcpus_caps_the_functions_running_at_once(coeffs, tmp_path):
    free = json.loads(fasdl(*base(coeffs, "--deadline", "3600", "--json"), cwd=tmp_path).stdout)
    assert free["num_workers"] * free["memory"] / 1769 > 4, "the scenario must need the cap"
    r = fasdl(*base(coeffs, "--deadline", "1e9", "--max-vcpus", "4", "--json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    capped = json.loads(r.stdout)
    assert capped["num_workers"] * capped["memory"] / 1769 <= 4 + 1e-9


def test_never_below_the_coeffs_min_memory(coeffs, tmp_path):
    free = json.loads(fasdl(*base(coeffs, "--deadline", "1e9", "--json"), cwd=tmp_path).stdout)
    floor = free["memory"] + 512  # the plan without a floor sits below it
    coeffs.write_text(json.dumps({**COEFFS, "min_memory_mb": floor}))
    for extra in ((), ("--min-memory", "128")):
        r = fasdl(*base(coeffs, "--deadline", "1e9", "--json", *extra), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["memory"] >= floor

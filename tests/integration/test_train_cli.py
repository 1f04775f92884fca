"""``fasdl train`` and ``fasdl demo`` as a user runs them: flags, the seed's payload, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fasdl.cli.main import main
from fasdl.data import write_cifar10_batches
from fasdl.kreduce.config import JobConfig
from fasdl.store import open_store

FASDL = [sys.executable, "-m", "fasdl.cli.main"]
SMALL = [
    "--model",
    "mlp",
    "--dataset",
    "synthetic:300",
    "-W",
    "3",
    "-K",
    "2",
    "--batch-agg",
    "8",
    "--batch-wor",
    "4",
    "--epochs",
    "1",
    "--memory",
    "512",
    "--platform",
    "inline",
]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (["-K", "4"], "-K/--aggregators:"),
        (["-K", "0"], "-K/--aggregators:"),
        (["--batch-agg", "0"], "--batch-agg:"),
        (["--batch-wor", "0"], "--batch-wor:"),
        (["--batch-agg", "200"], "--batch-agg:"),  # global batch 2*200 + 4 > 300 samples
        (["--memory", "100"], "--memory:"),
        (["--memory", "10241"], "--memory:"),
        (["--func-time", "0"], "--func-time:"),
        (["--func-time", "901"], "--func-time:"),
        (["--epochs", "0"], "--epochs:"),
        (["--model", "resnet9000"], "--model:"),
        (["--dataset", "imagenet"], "--dataset:"),
        (["--dataset", "cifar10:/nonexistent/cifar"], "--dataset:"),
        (["--seed", "-1"], "--seed:"),
        (["--job-id", "../escape"], "--job-id:"),
        (["--lr", "0"], "--lr:"),
        (["--comm-timeout", "0"], "--comm-timeout:"),
        (["--checkpoint-every", "1"], "--checkpoint-every:"),
        (["--lr", "nan"], "--lr:"),
        (["--lr", "inf"], "--lr:"),
        (["--momentum", "-0.5"], "--momentum:"),
        (["--momentum", "nan"], "--momentum:"),
        (["--func-time", "nan"], "--func-time:"),
        (["--comm-timeout", "inf"], "--comm-timeout:"),
        (["--comm-timeout", "nan"], "--comm-timeout:"),
    ],
)
def test_bad_input_exits_2_names_the_flag_and_writes_nothing(
    tmp_path, capsys, change, field
) -> None:
    store = tmp_path / "store"
    code = main(["train", *SMALL, "--store", store.as_uri(), *change])
    err = capsys.readouterr().err
    assert code == 2, err
    assert field in err, err
    assert _files(store) == []


def test_memory_store_needs_the_inline_platform(capsys) -> None:
    code = main(["train", *SMALL[:-2], "--platform", "local", "--store", "memory://x"])
    assert code == 2
    assert "--platform inline" in capsys.readouterr().err


def test_help_and_bad_flag_as_subprocess(tmp_path) -> None:
    out = subprocess.run([*FASDL, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--batch-agg" in out.stdout and "--payload" in out.stdout
    bad = subprocess.run(
        [*FASDL, "train", *SMALL, "-K", "9", "--store", tmp_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "error: -K/--aggregators: K = 9" in bad.stderr
    assert "pattern_k" not in bad.stderr and "num_aggregators" not in bad.stderr
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"pattern_k": "0", "num_workers": "3"}, "pattern_k in "),
        ({"pattern_k": "5", "num_workers": "3"}, "pattern_k in "),
        ({"memory": "100"}, "memory in "),
        ({"func_time": "0"}, "func_time in "),
        ({"l_r": "-1"}, "l_r in "),
        ({"batch_size_agg": "x"}, "batch_size_agg in "),
        ({"num_aggregators": 0}, "num_aggregators in "),  # our own field names work too
        ({"batch_size_agg": 200, "num_workers": 3, "pattern_k": 2}, "batch_size_agg in "),
        ({"job_id": 5}, "job_id in "),  # not a string: bad input, not a crash
        ({"tmp_bucket": 5}, "tmp_bucket in "),
        ({"epochs": "inf"}, "epochs in "),
        ({"momentum": "nan"}, "momentum in "),
        ({"momentum": -0.1}, "momentum in "),
        ({"l_r": "nan"}, "l_r in "),
        ({"weight_decay": "inf"}, "weight_decay in "),
        ({"memory": "NaN"}, "memory in "),
        ({"comm_timeout_s": "-Infinity"}, "comm_timeout_s in "),
        ({"num_worker": 8}, "num_worker in "),  # a typo: refused, not the default
        ({"predicted_time_s": 3.0}, "predicted_time_s in "),  # a plan's key, in a payload
        ({"tmp_bucket": "merged"}, "tmp_bucket in "),  # the one the user gave is named
        ({"output_bucket": "tmp"}, "output_bucket in "),
        ({"tmp_bucket": "x", "merged_bucket": "x"}, "merged_bucket in "),
        ({"output_prefix": "tmp/out"}, "output_prefix in "),
        ({"data_bucket": "output"}, "data_bucket in "),
    ],
)
def test_a_bad_payload_names_the_payload_key(tmp_path, capsys, payload, named) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"train_net": "mlp", **payload}))
    store = tmp_path / "store"
    argv = ["train", "--payload", str(path), "--dataset", "synthetic:300", "--platform", "inline"]
    code = main([*argv, "--store", store.as_uri()])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: {named}{path}:" in err, err
    assert _files(store) == []


def test_a_flag_overriding_the_payload_is_named_as_the_flag(tmp_path, capsys) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"train_net": "mlp", "pattern_k": "1", "num_workers": "3"}))
    argv = ["train", "--payload", str(path), "-K", "0", "--store", (tmp_path / "s").as_uri()]
    assert main(argv) == 2
    assert "error: -K/--aggregators:" in capsys.readouterr().err


def test_an_unknown_key_names_the_closest_known_one(tmp_path, capsys) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"train_net": "mlp", "num_worker": 8}))
    store = tmp_path / "store"
    code = main(
        ["train", "--payload", str(path), "--platform", "inline", "--store", store.as_uri()]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: num_worker in {path}: unknown key (did you mean 'num_workers'?)" in err, err
    assert _files(store) == []


def test_overlapping_prefixes_say_why(tmp_path, capsys) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"train_net": "mlp", "output_bucket": "tmp"}))
    store = tmp_path / "store"
    code = main(
        ["train", "--payload", str(path), "--platform", "inline", "--store", store.as_uri()]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        f"error: output_bucket in {path}: the tmp prefix 'tmp' and the output prefix 'tmp' are "
        "the same (the job deletes its tmp, merged and partition prefixes when it ends" in err
    ), err
    assert _files(store) == []


def test_a_plan_carries_its_prediction_but_no_typos(tmp_path, capsys) -> None:
    from fasdl.cli.main import build_parser
    from fasdl.cli.train import config_from_args
    from fasdl.optimizer.plan import PLAN_JSON_KEYS

    job = {"batch_size_agg": 8, "num_workers": 3, "memory": 512, "batch_size_wor": 4}
    job["wire"] = "fp16"  # a plan's job keys: the wire format it was priced for
    plan = {**dict.fromkeys(PLAN_JSON_KEYS, 1.0), **job, "pattern_k": 2, "func_time": 900}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    argv = ["train", "--plan", str(path), "--model", "mlp", "--dataset", "synthetic:300"]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (cfg.num_workers, cfg.num_aggregators, cfg.memory_mb, cfg.wire) == (3, 2, 512, "fp16")

    path.write_text(json.dumps({**plan, "pattern_kk": 1}))
    store = tmp_path / "store"
    assert main([*argv, "--platform", "inline", "--store", store.as_uri()]) == 2
    err = capsys.readouterr().err
    assert f"error: pattern_kk in {path}: unknown key (did you mean 'pattern_k'?)" in err, err
    assert _files(store) == []


@pytest.mark.parametrize(
    ("payload", "flags"),
    [
        ({"tmp_bucket": "merged"}, []),
        ({"output_bucket": "partition/out"}, []),
        ({"num_worker": 8}, []),
        ({"l_r": "nan"}, []),
        ({}, ["--momentum", "-0.9"]),
        ({}, ["--comm-timeout", "inf"]),
        ({}, ["--batch-agg", "200"]),  # found with the data: still before anything is written
        ({}, ["--dataset", "cifar10:/nonexistent/cifar"]),
    ],
)
def test_a_refused_job_writes_nothing_and_invokes_nothing(
    tmp_path, capsys, monkeypatch, payload, flags
) -> None:
    from fasdl.platform.base import Platform

    invoked: list[str] = []
    monkeypatch.setattr(Platform, "invoke", lambda self, *a, **k: invoked.append(self.name))
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"train_net": "mlp", **payload}))
    store = tmp_path / "store"
    argv = ["train", "--payload", str(path), *SMALL[2:-2], "--platform", "local", *flags]
    assert main([*argv, "--store", store.as_uri()]) == 2, capsys.readouterr().err
    assert invoked == []
    assert _files(store) == []


def test_the_spy_sees_a_valid_job_invoke(tmp_path, monkeypatch) -> None:
    """The control of the test above: the same spy records the invocations of a valid job."""
    from fasdl.platform.base import Platform

    original = Platform.invoke
    invoked: list[str] = []

    def spy(self, *a, **k):
        invoked.append(self.name)
        return original(self, *a, **k)

    monkeypatch.setattr(Platform, "invoke", spy)
    argv = ["train", *SMALL, "--store", tmp_path.as_uri(), "--no-progress", "--json"]
    assert main(argv) == 0
    assert invoked and set(invoked) == {"inline"}


def test_seed_payload_with_cifar10_in_the_data_prefix(tmp_path) -> None:
    """The seed's trigger payload as it is (strings, bucket fields) against one store."""
    store_url = (tmp_path / "bucket").as_uri()
    write_cifar10_batches(open_store(store_url).scoped("data"), n_per_batch=40, seed=1, n_test=50)
    payload = {
        "train_net": "cnn",
        "pattern_k": "2",
        "num_workers": "3",
        "batch_size_wor": "8",
        "batch_size_agg": "16",
        "epochs": "1",
        "l_r": "0.05",
        "memory": "512",
        "func_time": "900",
        "seed": "3",
        "tmp_bucket": "tmp",
        "merged_bucket": "merged",
        "partition_bucket": "partition",
        "data_bucket": "data",
        "output_bucket": "output",
    }
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    out = subprocess.run(
        [
            *FASDL,
            "train",
            "--payload",
            str(path),
            "--store",
            store_url,
            "--platform",
            "inline",
            "--job-id",
            "seed",
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    for key in (
        "wall_time_s",
        "train_time_s",
        "comm_time_s",
        "billed_gb_s",
        "requests",
        "cost_usd",
        "test_accuracy",
        "iterations",
        "outputs",
    ):
        assert key in summary, key
    assert set(summary["cost_usd"]) >= {"functions", "storage", "total"}
    # the seed's semantics: an equal-weight average and SGD without momentum
    assert summary["config"]["merge"] == "mean" and summary["config"]["momentum"] == 0.0
    assert summary["config"]["num_aggregators"] == 2 and summary["config"]["dataset"] == "cifar10"
    assert summary["iterations"] == 200 // (2 * 16 + 8)
    assert 0 <= summary["test_accuracy"] <= 1
    keys = open_store(store_url).list()
    assert "output/seed/model.pt" in keys
    assert not [k for k in keys if k.startswith(("tmp/", "merged/", "partition/"))]


def test_a_seed_payload_keeps_what_it_says_and_flags_override(tmp_path) -> None:
    from fasdl.cli.main import build_parser
    from fasdl.cli.train import config_from_args

    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"train_net": "mlp", "l_r": "0.1", "momentum": 0.5}))
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"model": "mlp", "lr": 0.1}))

    def config(*argv: str) -> JobConfig:
        return config_from_args(build_parser().parse_args(["train", *argv]))

    c = config("--payload", str(seed))
    assert (c.merge, c.momentum) == ("mean", 0.5)
    c = config("--payload", str(seed), "--merge", "batch", "--momentum", "0.9")
    assert (c.merge, c.momentum) == ("batch", 0.9)
    c = config("--payload", str(ours))  # our own field names: fasdl's defaults
    assert (c.merge, c.momentum) == ("mean", 0.9)


@pytest.mark.parametrize("pattern", ["scatter_reduce", "allreduce"])
def test_patterns(tmp_path, capsys, pattern) -> None:
    code = main(
        [
            "train",
            *SMALL,
            "--pattern",
            pattern,
            "--store",
            tmp_path.as_uri(),
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    if pattern == "scatter_reduce":
        assert (
            cfg["num_aggregators"] == cfg["num_workers"] == 3
            and cfg["batch_size_wor"] == cfg["batch_size_agg"]
        )
    else:
        assert cfg["num_aggregators"] == 1 and cfg["batch_size_wor"] == cfg["batch_size_agg"]


@pytest.mark.slow
def test_func_time_too_short_for_one_iteration(tmp_path, capsys) -> None:
    code = main(
        [
            "train",
            *SMALL[:-2],
            "--platform",
            "local",
            "--func-time",
            "1",
            "--store",
            tmp_path.as_uri(),
        ]
    )
    assert code == 2
    assert "--func-time" in capsys.readouterr().err


def test_the_optimizers_plan_trains(tmp_path) -> None:
    """`fasdl optimize --json > plan.json` feeds `fasdl train --plan plan.json`."""
    coeffs = tmp_path / "coeffs.json"
    coeffs.write_text(
        json.dumps(
            {
                "a": 400.0,
                "b": 8.0,
                "m": 50.0,
                "k1": 2.0,
                "k2": -0.3,
                "model_size_mb": 0.12,
                "startup_fixed_s": 0.5,
                "startup_cpu_s": 0.5,
                "train_cv": 0.1,
                "eval_s_per_sample": 1e-4,
            }
        )
    )
    plan = subprocess.run(
        [
            *FASDL,
            "optimize",
            "--coeffs",
            str(coeffs),
            "--epochs",
            "1",
            "--samples",
            "300",
            "--deadline",
            "600",
            "--max-workers",
            "3",
            "--max-memory",
            "1024",
            "--max-global-batch",
            "64",
            "--test-samples",
            "60",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plan.returncode == 0, plan.stderr
    (tmp_path / "plan.json").write_text(plan.stdout)
    p = json.loads(plan.stdout)
    from fasdl.optimizer.plan import PLAN_JSON_KEYS

    assert set(p) == PLAN_JSON_KEYS  # what `fasdl train --plan` accepts
    out = subprocess.run(
        [
            *FASDL,
            "train",
            "--plan",
            str(tmp_path / "plan.json"),
            "--model",
            "mlp",
            "--dataset",
            "synthetic:300",
            "--platform",
            "inline",
            "--store",
            (tmp_path / "s").as_uri(),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)["config"]
    assert (cfg["num_workers"], cfg["num_aggregators"], cfg["memory_mb"]) == (
        p["num_workers"],
        p["pattern_k"],
        p["memory"],
    )
    assert (cfg["batch_size_agg"], cfg["batch_size_wor"]) == (
        p["batch_size_agg"],
        p["batch_size_wor"],
    )
    # The plan's prediction next to the measurement, term by term, and in the store.
    summary = json.loads(out.stdout)
    pred = summary["prediction"]
    assert pred["time_s"] == p["predicted_time_s"] and pred["cost_usd"] == p["predicted_cost_usd"]
    evaluation = summary["phases_s"]["evaluation"]
    assert pred["measured_time_s"] == pytest.approx(summary["wall_time_s"] + evaluation)
    assert pred["measured_cost_usd"] == summary["cost_usd"]["total"]
    m = pred["measured_time_s"]
    assert pred["accuracy_time"] == pytest.approx(1 - abs(pred["time_s"] - m) / m)
    terms = pred["terms"]
    assert set(p["breakdown"]["job_s"]) <= set(terms)
    for name in ("loop", "startup", "evaluation", "functions_usd", "store_usd", "rounds", "GET"):
        t = terms[name]
        assert t["accuracy"] == pytest.approx(
            1 - abs(t["predicted"] - t["measured"]) / t["measured"]
        )
    assert terms["rounds"]["measured"] == summary["rounds"]
    assert terms["GET"]["measured"] == summary["requests"]["GET"]
    # the time terms add up to the measured time
    parts = ("loop", "startup", "checkpoint", "evaluation")
    assert sum(terms[k]["measured"] for k in parts) == pytest.approx(m)
    store = open_store((tmp_path / "s").as_uri())
    stored = json.loads(store.get(f"output/{summary['job_id']}/prediction.json"))
    assert stored == pred


@pytest.mark.parametrize("arch", ["x86", "arm64"])
def test_the_cost_uses_the_architectures_price(tmp_path, capsys, arch) -> None:
    from fasdl.pricing import load_prices

    argv = ["train", *SMALL, "--arch", arch, "--store", tmp_path.as_uri(), "--json"]
    assert main([*argv, "--no-progress"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["config"]["arch"] == arch
    p = load_prices(arch=arch)
    expected = p.function_cost(s["billed_gb_s"], s["invocations"])
    assert s["cost_usd"]["functions"] == pytest.approx(expected, rel=1e-3)

"""K-Reduce jobs with a lossy wire (``--wire``): against the serial reference, and trained."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_kreduce_job import TINY  # the same small job

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import final_vector, prepare, run_job
from fasdl.kreduce.reference import reference_run
from fasdl.platform import open_platform

DIGITS = {
    "model": "mlp",
    "dataset": "digits",
    "num_workers": 3,
    "num_aggregators": 2,
    "batch_size_agg": 32,
    "batch_size_wor": 16,
    "epochs": 6,
    "lr": 0.05,
    "memory_mb": 512,
    "comm_timeout_s": 60,
}


@pytest.mark.parametrize(
    ("wire", "k", "pattern"),
    [
        ("fp16", 2, "kreduce"),
        ("bf16", 1, "kreduce"),
        ("int8", 2, "kreduce"),
        ("int8", 4, "kreduce"),
        ("fp16", 2, "allreduce"),
    ],
)
def test_a_lossy_wire_matches_the_serial_reference_bit_for_bit(
    wire: str, k: int, pattern: str
) -> None:
    """The reference applies the same rounding (and int8's residuals): no tolerance needed."""
    cfg = JobConfig(
        **TINY,
        num_aggregators=k,
        pattern=pattern,
        wire=wire,
        store=f"memory://wire-{wire}-{k}-{pattern}",
        platform="inline",
        job_id="wire",
    )
    with open_platform("inline") as platform:
        summary = run_job(cfg, platform=platform)
    assert summary.config["wire"] == wire
    job = prepare(cfg)
    expected = reference_run(cfg, job.partitions, job.meta(), job.total_iterations)
    np.testing.assert_array_equal(final_vector(cfg), expected)
    # and the rounding matters: the fp32 reference differs
    exact = reference_run(
        JobConfig(**{**cfg.to_dict(), "wire": "fp32"}),
        job.partitions,
        job.meta(),
        job.total_iterations,
    )
    assert np.max(np.abs(exact - expected)) > 1e-6


def test_an_int8_run_without_error_feedback_would_differ(monkeypatch) -> None:
    """The reference is sensitive to the residuals: dropping them changes the weights."""
    from fasdl.training import wire

    cfg = JobConfig(**TINY, num_aggregators=2, wire="int8", store="memory://ef", platform="inline")
    job = prepare(cfg)
    with_feedback = reference_run(cfg, job.partitions, job.meta(), 8)
    monkeypatch.setattr(wire, "FEEDBACK_WIRES", ())
    without = reference_run(cfg, job.partitions, job.meta(), 8)
    assert np.max(np.abs(with_feedback - without)) > 1e-5


def test_fp16_checkpoints_and_resumes_to_exactly_the_same_weights() -> None:
    """fp16 keeps no state between iterations, so re-invocations change nothing (int8 restarts
    its residuals at zero in each invocation: 0.0039 apart after 5 rounds of this job)."""
    base = {**TINY, "num_aggregators": 2, "platform": "inline", "wire": "fp16"}
    straight = JobConfig(**base, store="memory://fp16-straight", job_id="straight")
    resumed = JobConfig(
        **base, max_iterations_per_invocation=5, store="memory://fp16-resumed", job_id="resumed"
    )
    with open_platform("inline") as platform:
        run_job(straight, platform=platform)
    with open_platform("inline") as platform:
        assert run_job(resumed, platform=platform).rounds >= 3
    np.testing.assert_array_equal(final_vector(resumed), final_vector(straight))


@pytest.mark.slow
@pytest.mark.parametrize("wire", ["fp16", "int8"])
def test_a_lossy_wire_trains_as_well_as_fp32_on_real_processes(wire: str, tmp_path) -> None:
    """mlp on digits, W = 3, K = 2 on the local platform (a process per function): error
    feedback converges. fp32 on the same data and seed reaches 95.5 % (the serial reference;
    fp16 and int8 too)."""
    cfg = JobConfig(
        **DIGITS, wire=wire, store=tmp_path.as_uri(), platform="local", job_id=f"d-{wire}"
    )
    summary = run_job(cfg)
    assert summary.test_accuracy is not None and summary.test_accuracy >= 0.9
    assert summary.config["wire"] == wire


def test_bad_wire_is_exit_2_naming_the_flag_or_the_key(tmp_path) -> None:
    cli = [sys.executable, "-m", "fasdl.cli.main", "train"]
    out = subprocess.run(
        [*cli, "--wire", "fp8", "--store", tmp_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--wire" in out.stderr and "fp16" in out.stderr, out.stderr
    payload = tmp_path / "job.json"
    payload.write_text(json.dumps({"model": "mlp", "wire": "half"}))
    out = subprocess.run(
        [*cli, "--payload", str(payload), "--store", tmp_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "wire in" in out.stderr and "'half'" in out.stderr and "int8" in out.stderr
    assert list(tmp_path.iterdir()) == [payload]  # nothing written


def test_train_with_a_wire_reports_it(tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "fasdl.cli.main", "train", "--model", "mlp",
            "--dataset", "synthetic:300", "-W", "2", "-K", "1", "--batch-agg", "16",
            "--batch-wor", "16", "--memory", "512", "--platform", "inline",
            "--store", "memory://cli-wire", "--wire", "bf16", "--json", "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["config"]["wire"] == "bf16"


def test_optimize_wire_goes_into_the_plan_and_train_plan_uses_it(tmp_path) -> None:
    from fasdl.cli.main import build_parser
    from fasdl.cli.train import config_from_args

    coeffs = tmp_path / "coeffs.json"
    coeffs.write_text(
        json.dumps({"a": 600, "b": 10, "m": 200, "k1": 0.5, "k2": 0.0, "model_size_mb": 45})
    )
    out = subprocess.run(
        [
            sys.executable, "-m", "fasdl.cli.main", "optimize", "--coeffs", str(coeffs),
            "--epochs", "10", "--samples", "50000", "--deadline", "14400", "--memory-step",
            "256", "--wire", "int8", "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    plan = tmp_path / "plan.json"
    plan.write_text(out.stdout)
    assert json.loads(out.stdout)["wire"] == "int8"
    train = ["train", "--plan", str(plan), "--model", "mlp", "--dataset", "digits"]
    assert config_from_args(build_parser().parse_args(train)).wire == "int8"
    flagged = build_parser().parse_args([*train, "--wire", "fp16"])
    assert config_from_args(flagged).wire == "fp16"  # a flag overrides the plan

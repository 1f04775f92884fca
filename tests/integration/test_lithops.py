"""Whole jobs through Lithops' localhost backend: ``fasdl train --platform lithops --backend
localhost`` with the S3 store on the SeaweedFS test server, from a fresh shell (a subprocess with
no Lithops config and no fasdl variables).

The final weights are compared bit for bit with the same job on the local platform: both run the
same handlers with the same torch thread count (from the memory's vCPUs), so the numbers match.
Nothing depends on the machine's speed: re-invocations are forced by ``--checkpoint-every``, and
the timeout by a worker test hook that makes one iteration outlast the function's time limit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import final_vector, run_job
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.worker import MIN_ITERATION_ENV
from fasdl.store import open_store
from fasdl.testing import SeaweedServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.s3,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        importlib.util.find_spec("lithops") is None, reason="pip install 'fasdl[lithops]'"
    ),
]

FASDL = [sys.executable, "-m", "fasdl.cli.main"]
JOB: dict[str, Any] = {
    "model": "mlp",
    "dataset": "synthetic:600",
    "num_workers": 3,
    "num_aggregators": 2,
    "batch_size_agg": 16,
    "batch_size_wor": 8,
    "epochs": 1,
    "lr": 0.05,
    "memory_mb": 512,
    "func_time_s": 300,
    "comm_timeout_s": 120,
    "max_iterations_per_invocation": 5,  # 15 iterations: three rounds, two re-invocations
}
FLAGS = {
    "model": "--model",
    "dataset": "--dataset",
    "num_workers": "-W",
    "num_aggregators": "-K",
    "batch_size_agg": "--batch-agg",
    "batch_size_wor": "--batch-wor",
    "epochs": "--epochs",
    "lr": "--lr",
    "memory_mb": "--memory",
    "func_time_s": "--func-time",
    "comm_timeout_s": "--comm-timeout",
    "max_iterations_per_invocation": "--checkpoint-every",
    "pattern": "--pattern",
    "retries": "--retries",
}


def _fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any Lithops or fasdl set-up, and a home without a config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITHOPS_", "FASDL_"))}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def _train_on_lithops(
    job: dict[str, Any], store: str, job_id: str, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    argv = [*FASDL, "train", "--platform", "lithops", "--backend", "localhost"]
    argv += ["--store", store, "--job-id", job_id, "--json", "--no-progress"]
    for field, value in job.items():
        argv += [FLAGS[field], str(value)]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        argv,
        env=_fresh_env(home, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=800,
    )


@pytest.fixture
def s3_store(seaweed: SeaweedServer, s3_bucket: str) -> str:
    return seaweed.url(s3_bucket, f"lithops-{uuid.uuid4().hex[:8]}")


def _same_job_on_local(job: dict[str, Any], tmp_path: Path, job_id: str) -> np.ndarray:
    cfg = JobConfig(**job, store=(tmp_path / "local").as_uri(), platform="local", job_id=job_id)
    run_job(cfg)
    return final_vector(cfg)


@pytest.mark.parametrize(
    "pattern",
    [
        "kreduce",
        # K = W, equal batches; two rounds of 5 iterations (10 iterations at 600 / (3 x 16)).
        "scatter_reduce",
    ],
)
def test_a_job_on_lithops_localhost_matches_the_local_platform(
    pattern: str, s3_store: str, tmp_path: Path
) -> None:
    job = {**JOB, "pattern": pattern}
    if pattern == "scatter_reduce":
        job |= {"num_aggregators": 3, "batch_size_wor": 16}
    out = _train_on_lithops(job, s3_store, "lj", tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["config"]["platform"] == "lithops"
    assert summary["rounds"] >= 2, "--checkpoint-every 5 should have re-invoked the workers"
    assert summary["invocations"] == 3 * summary["rounds"]
    assert summary["retries"] == []
    assert summary["billed_gb_s"] > 0

    cfg = JobConfig(**job, store=s3_store, platform="lithops", job_id="lj")
    records = json.loads(open_store(s3_store).get(Keys.for_job(cfg).invocations()))
    assert len(records) == summary["invocations"]
    for r in records:
        assert r["state"] == "succeeded", r
        assert r["memory_mb"] == 512 and r["billed_ms"] >= 1
        assert r["started_at"] < r["ended_at"]
        assert r["gb_s"] == pytest.approx(512 / 1024 * r["billed_ms"] / 1000)
        assert r["peak_memory_mb"] > 0  # the function process's own peak
    # A round's workers all ran at the same time (they wait for each other to start).
    by_round = [records[i : i + 3] for i in range(0, len(records), 3)]
    for rnd in by_round:
        assert max(r["started_at"] for r in rnd) < min(r["ended_at"] for r in rnd)

    on_lithops = final_vector(cfg)
    np.testing.assert_array_equal(on_lithops, _same_job_on_local(job, tmp_path, "lj"))


def test_a_worker_timeout_reaches_the_coordinator(s3_store: str, tmp_path: Path) -> None:
    """One iteration lasts 120 s (a worker test hook) in functions limited to 15 s: Lithops kills
    them at their limit, and the coordinator sees a timed-out worker and fails the job (no
    retries). A machine too slow to start a worker in 15 s gets the other verdict the
    coordinator gives a timeout, "too short" (exit 2): either way the timeout reached it."""
    job = {**JOB, "func_time_s": 15, "retries": 0}
    out = _train_on_lithops(job, s3_store, "late", tmp_path, **{MIN_ITERATION_ENV: "120"})
    assert out.returncode in (1, 2), out.stderr
    if out.returncode == 1:
        assert "timed_out during round 0" in out.stderr, out.stderr
        assert "Task timed out after" in out.stderr
        assert "Function exceeded maximum time of 15 seconds" in out.stderr
    else:
        assert "--func-time" in out.stderr and "timed out starting" in out.stderr, out.stderr

"""Jobs that survive faults: a killed worker, a worker that always fails, a killed coordinator.

Real processes on the local platform and a file store. Faults happen at points the tests choose
(an iteration a worker reaches, a round the job's state records), never after a fixed sleep:
``FASDL_TEST_KILL_AT`` makes a worker SIGKILL itself at an iteration, and
``FASDL_TEST_MIN_ITERATION_S`` makes the coordinator's job last long enough to be caught
mid-run whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fasdl.errors import JobFailed
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import final_vector, resume_job, run_job
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.state import read_state
from fasdl.kreduce.worker import KILL_AT_ENV, MIN_ITERATION_ENV
from fasdl.store import ObjectStore, open_store

pytestmark = pytest.mark.slow

JOB = {
    "model": "mlp",
    "dataset": "synthetic:600",
    "num_workers": 3,
    "num_aggregators": 2,
    "batch_size_agg": 16,
    "batch_size_wor": 8,
    "epochs": 2,
    "lr": 0.05,
    "memory_mb": 512,
    "comm_timeout_s": 60,
    "max_iterations_per_invocation": 5,  # several rounds, so a retry starts from a checkpoint
    "platform": "local",
}
FASDL = [sys.executable, "-m", "fasdl.cli.main"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The final weights of the job without any fault (the oracle)."""
    store = tmp_path_factory.mktemp("straight").as_uri()
    cfg = JobConfig(**JOB, store=store, job_id="straight")
    summary = run_job(cfg)
    assert summary.rounds >= 3 and summary.retries == []
    return final_vector(cfg)


def test_a_killed_worker_costs_one_round(tmp_path, monkeypatch, uninterrupted) -> None:
    # worker 2 (a non-aggregator) dies with SIGKILL at iteration 8, in the job's second round
    monkeypatch.setenv(KILL_AT_ENV, "2:8:1")
    cfg = JobConfig(**JOB, store=tmp_path.as_uri(), job_id="killed")
    summary = run_job(cfg)
    (retry,) = summary.retries
    assert retry["worker"] == 2 and retry["round"] == 1
    assert "signal" in retry["reason"] or "killed" in retry["reason"].lower(), retry
    assert 0 <= retry["iterations_lost"] <= 8 - 5
    np.testing.assert_array_equal(final_vector(cfg), uninterrupted)
    # the failed attempt's invocations are billed too, and nothing but the outputs is left
    records = json.loads(open_store(cfg.store).get(Keys.for_job(cfg).invocations()))
    assert sum(r["state"] != "succeeded" for r in records) >= 1
    assert all(k.startswith("output/killed/") for k in open_store(cfg.store).list())


def test_a_worker_that_always_fails_stops_then_resumes(tmp_path, uninterrupted) -> None:
    store = tmp_path.as_uri()
    argv = [*_train_argv(store, "doomed"), "--retries", "2"]
    env = {**os.environ, KILL_AT_ENV: "1:8:*"}  # worker 1 dies at iteration 8, every time
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "worker 1" in out.stderr and "after 2 retries" in out.stderr
    assert f"fasdl resume doomed --store {store}" in out.stderr
    keys = Keys.for_job(JobConfig(**JOB, store=store, job_id="doomed"))
    s = open_store(store)
    state = read_state(s, keys)
    assert state.status == "failed" and len(state.retries) == 3 and state.done == 5
    assert s.list(keys.checkpoint_set(state.checkpoint_set))  # the checkpoints are kept

    resumed = subprocess.run(
        [*FASDL, "resume", "doomed", "--store", store, "--json", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert len(summary["retries"]) == 3 and summary["iterations"] > 8
    cfg = JobConfig(**JOB, store=store, job_id="doomed")
    np.testing.assert_array_equal(final_vector(cfg), uninterrupted)


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)  # polling what the job writes, with a deadline
    raise AssertionError(f"timed out waiting for {what}")


def _train_argv(store: str, job: str) -> list[str]:
    """`fasdl train` of JOB, as a user types it."""
    argv = [*FASDL, "train", "--no-progress", "--store", store, "--job-id", job]
    argv += ["--model", "mlp", "--dataset", "synthetic:600", "-W", "3", "-K", "2"]
    argv += ["--batch-agg", "16", "--batch-wor", "8", "--epochs", "2", "--lr", "0.05"]
    return [*argv, "--memory", "512", "--comm-timeout", "60", "--checkpoint-every", "5"]


def _wait_for_round_one(s: ObjectStore, keys: Keys) -> None:
    def past_round_one() -> bool:
        try:
            return read_state(s, keys).round >= 1
        except FileNotFoundError:
            return False

    _wait_for("the job's first completed round", past_round_one)


def test_a_killed_coordinator_resumes_to_the_same_weights(tmp_path, uninterrupted) -> None:
    store = tmp_path.as_uri()
    job = "orphan"
    argv = _train_argv(store, job)
    # Iterations of at least 0.2 s: the job outlasts the test's look at it, however fast.
    env = {**os.environ, MIN_ITERATION_ENV: "0.2"}
    coordinator = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    keys = Keys.for_job(JobConfig(**JOB, store=store, job_id=job))
    s = open_store(store)
    _wait_for_round_one(s, keys)
    # a second coordinator for the live job is refused
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "is running" in second.stderr, second.stderr
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait(timeout=60)
    state = read_state(s, keys)
    assert state.status == "running"  # it never knew it died

    resumed = subprocess.run(
        [*FASDL, "resume", job, "--store", store, "--json", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["rounds"] >= 3
    np.testing.assert_array_equal(
        final_vector(JobConfig(**JOB, store=store, job_id=job)), uninterrupted
    )
    assert all(k.startswith(f"output/{job}/") for k in s.list())


def test_resume_refuses_a_finished_or_unknown_job(tmp_path) -> None:
    out = subprocess.run(
        [*FASDL, "resume", "nope", "--store", tmp_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no job 'nope'" in out.stderr


def test_a_job_id_with_state_points_to_resume(tmp_path) -> None:
    cfg = JobConfig(**{**JOB, "platform": "inline"}, store=tmp_path.as_uri(), job_id="twice")
    run_job(cfg)
    with pytest.raises(Exception, match="fasdl resume twice"):
        run_job(cfg)
    with pytest.raises(Exception, match="finished already"):
        resume_job("twice", tmp_path.as_uri())


def test_job_failed_is_raised_when_retries_are_zero(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(KILL_AT_ENV, "0:3:*")
    cfg = JobConfig(**{**JOB, "retries": 0}, store=tmp_path.as_uri(), job_id="zero")
    with pytest.raises(JobFailed, match="worker 0"):
        run_job(cfg)
    assert read_state(open_store(cfg.store), Keys.for_job(cfg)).status == "failed"
    assert Path(tmp_path, "partition", "zero").exists()  # kept for resume


def test_sigterm_stops_the_workers_keeps_the_checkpoints_and_says_how_to_resume(
    tmp_path,
) -> None:
    store = tmp_path.as_uri()
    job = "stopped"
    argv = _train_argv(store, job)
    env = {**os.environ, MIN_ITERATION_ENV: "0.2"}
    coordinator = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    keys = Keys.for_job(JobConfig(**JOB, store=store, job_id=job))
    s = open_store(store)
    _wait_for_round_one(s, keys)
    coordinator.send_signal(signal.SIGTERM)
    _, err = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 130, err
    assert f"fasdl resume {job} --store {store}" in err
    state = read_state(s, keys)
    assert state.status == "interrupted" and state.checkpoint_set is not None
    assert s.list(keys.checkpoint_set(state.checkpoint_set))
    assert not s.exists(keys.lease())  # the lease is dropped: resume needs no wait
